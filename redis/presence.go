package sseredis

import (
	"cmp"
	"context"
	"encoding/json"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gin-sse/sse"
	"github.com/redis/go-redis/v9"
)

var _ sse.PresenceBackend = (*Backend)(nil)

// setPresenceScript stores an instance's presence on a topic until Redis's
// clock passes now + ttl: a field of the topic's presence hash, whose value
// is that expiry in ms, a newline, and the presence as JSON. An empty
// presence removes the field. The hash itself expires 3 ttl after its
// last write.
//
// KEYS[1]: the hash. ARGV: the instance, ttl in ms, the JSON ("" to
// remove).
var setPresenceScript = redis.NewScript(`
if ARGV[3] == '' then
	redis.call('HDEL', KEYS[1], ARGV[1])
	return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('HSET', KEYS[1], ARGV[1], string.format('%.0f', now + tonumber(ARGV[2])) .. '\n' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], 3 * tonumber(ARGV[2]))
return 1
`)

// presenceScript returns the entries of a topic's presence hash that have
// not expired by Redis's clock, and deletes those that have.
var presenceScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local all = redis.call('HGETALL', KEYS[1])
local live = {}
for i = 1, #all, 2 do
	local v = all[i + 1]
	local nl = string.find(v, '\n', 1, true)
	if nl and tonumber(string.sub(v, 1, nl - 1)) > now then
		table.insert(live, string.sub(v, nl + 1))
	else
		redis.call('HDEL', KEYS[1], all[i])
	end
end
return live
`)

// presenceKey is the key of topic's presence hash (in the topic's slot).
func (b *Backend) presenceKey(topic string) string { return b.Key(topic) + ":p" }

// SetPresence implements [sse.PresenceBackend]: this instance's entry,
// under an id of its own, expires ttl after this write by Redis's clock.
func (b *Backend) SetPresence(ctx context.Context, topic string, p sse.Presence, ttl time.Duration) error {
	if err := checkTopic(topic); err != nil {
		return err
	}
	data := ""
	if p.Subscribers > 0 {
		raw, err := json.Marshal(p)
		if err != nil {
			return err
		}
		data = string(raw)
	}
	ctx, cancel := b.call(ctx)
	defer cancel()
	err := setPresenceScript.Run(ctx, b.client, []string{b.presenceKey(topic)}, b.instance, max(ttl.Milliseconds(), 1), data).Err()
	if err != nil && err != redis.Nil {
		return b.failed("set presence", err)
	}
	return nil
}

// Presence implements [sse.PresenceBackend]: the entries of every instance
// that have not expired, merged.
func (b *Backend) Presence(ctx context.Context, topic string) (sse.Presence, error) {
	out := sse.Presence{Users: []sse.PresentUser{}}
	if err := checkTopic(topic); err != nil {
		return out, err
	}
	ctx, cancel := b.call(ctx)
	defer cancel()
	entries, err := presenceScript.Run(ctx, b.client, []string{b.presenceKey(topic)}).StringSlice()
	if err != nil && err != redis.Nil {
		return out, b.failed("presence", err)
	}
	users := map[string]*sse.PresentUser{}
	for _, e := range entries {
		var p sse.Presence
		if json.NewDecoder(strings.NewReader(e)).Decode(&p) != nil {
			continue // not ours
		}
		out.Subscribers += p.Subscribers
		for _, u := range p.Users {
			if have := users[u.ID]; have != nil {
				have.Streams += u.Streams
			} else {
				users[u.ID] = &u
			}
		}
	}
	for _, u := range users {
		out.Users = append(out.Users, *u)
	}
	slices.SortFunc(out.Users, func(a, b sse.PresentUser) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// newInstanceID names this backend's entries among those of other
// instances.
func newInstanceID() string {
	return strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatUint(rand.Uint64(), 36)
}
