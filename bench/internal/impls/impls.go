// Package impls holds the server side of the benchmark: one fan-out
// implementation per library compared, each driven through its normal
// public API, behind the same control endpoints.
package impls

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
)

// Impl is one SSE fan-out implementation under test.
type Impl interface {
	// Handler serves the event stream at GET /events?stream=t.
	Handler() http.Handler
	// Publish sends one event with id seq and the given data to every
	// subscriber of topic "t". data is only valid during the call.
	Publish(seq int, data []byte) error
	// Subscribers returns the number of subscribers that will get every
	// event published from now on.
	Subscribers() int
	// Close releases the implementation.
	Close()
}

// Options tune the implementations that have settings.
type Options struct {
	// QueueSize is the buffer of the hand-written gin fan-out's channels.
	// (gin-sse runs with its default options.)
	QueueSize int
	// Heartbeat is unused: gin-sse runs with its default heartbeat, and
	// the peers send none.
	Heartbeat int // seconds
	// RedisAddr is the Redis of gin-sse-redis (host:port).
	RedisAddr string
	// RedisClusterAddrs, when set, are the seed addresses of a Redis
	// Cluster that gin-sse-redis uses instead of RedisAddr (through a
	// go-redis ClusterClient).
	RedisClusterAddrs []string
	// RedisPrefix is the key prefix of gin-sse-redis: servers with the
	// same one share their events. "" gives each server its own (and
	// deletes its keys on Close).
	RedisPrefix string
}

// TopicNames lists the implementations that take topics (see
// TopicPublisher): the many-topics scenario runs only these.
var TopicNames = []string{"bare", "gin-sse", RedisName}

// Names lists the implementations, the ceiling (bare) first.
var Names = []string{"bare", "gin-sse", "gin", "r3labs", "gosse"}

// New returns the implementation called name.
func New(name string, o Options) (Impl, error) {
	if o.QueueSize <= 0 {
		o.QueueSize = 1 << 20
	}
	switch name {
	case "bare":
		return newBare(), nil
	case "gin-sse":
		return newGinSSE(o)
	case RedisName:
		return newGinSSERedis(o)
	case "gin":
		return newGin(o), nil
	case "r3labs":
		return newR3labs(), nil
	case "gosse":
		return newGoSSE(), nil
	}
	return nil, fmt.Errorf("unknown implementation %q (want one of %v or %s)", name, Names, RedisName)
}

// Valid reports whether name is a known implementation.
func Valid(name string) bool { return slices.Contains(Names, name) || name == RedisName }

// AppendPayload appends the data of event seq: "<seq> <unix ns> " and
// padding up to size bytes.
func AppendPayload(dst []byte, seq int, unixNano int64, size int) []byte {
	start := len(dst)
	dst = strconv.AppendInt(dst, int64(seq), 10)
	dst = append(dst, ' ')
	dst = strconv.AppendInt(dst, unixNano, 10)
	dst = append(dst, ' ')
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}
