package impls

import (
	"net/http"
	"strconv"
	"sync"
)

// bare is the practical ceiling: a plain net/http handler, every event
// encoded once per publish, and each subscriber writing its whole backlog
// in one Write and one Flush.
type bare struct {
	mu   sync.Mutex
	subs map[string]map[*bareSub]struct{} // by topic (query parameter "stream")
	n    int
}

type bareSub struct {
	mu     sync.Mutex
	queue  [][]byte
	spare  [][]byte
	signal chan struct{}
}

func newBare() *bare { return &bare{subs: make(map[string]map[*bareSub]struct{})} }

func (b *bare) Publish(seq int, data []byte) error { return b.PublishTopic("t", seq, data) }

func (b *bare) PublishTopic(topic string, seq int, data []byte) error {
	frame := make([]byte, 0, len("id: \ndata: \n\n")+20+len(data))
	frame = append(frame, "id: "...)
	frame = strconv.AppendInt(frame, int64(seq), 10)
	frame = append(frame, "\ndata: "...)
	frame = append(frame, data...)
	frame = append(frame, "\n\n"...)
	b.mu.Lock()
	for s := range b.subs[topic] {
		s.mu.Lock()
		s.queue = append(s.queue, frame)
		s.mu.Unlock()
		select {
		case s.signal <- struct{}{}:
		default:
		}
	}
	b.mu.Unlock()
	return nil
}

func (b *bare) Subscribers() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.n
}

func (b *bare) Close() {}

func (b *bare) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fl, ok := w.(http.Flusher)
		if !ok {
			http.Error(w, "no flusher", http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		fl.Flush()

		s := &bareSub{signal: make(chan struct{}, 1)}
		topic := r.URL.Query().Get("stream")
		b.mu.Lock()
		if b.subs[topic] == nil {
			b.subs[topic] = make(map[*bareSub]struct{})
		}
		b.subs[topic][s] = struct{}{}
		b.n++
		b.mu.Unlock()
		defer func() {
			b.mu.Lock()
			delete(b.subs[topic], s)
			if len(b.subs[topic]) == 0 {
				delete(b.subs, topic)
			}
			b.n--
			b.mu.Unlock()
		}()

		var buf []byte
		ctx := r.Context()
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.signal:
			}
			s.mu.Lock()
			q := s.queue
			clear(s.spare)
			s.queue, s.spare = s.spare[:0], q
			s.mu.Unlock()
			if len(q) == 0 {
				continue
			}
			p := q[0]
			if len(q) > 1 {
				buf = buf[:0]
				for _, f := range q {
					buf = append(buf, f...)
				}
				p = buf
			}
			if _, err := w.Write(p); err != nil {
				return
			}
			fl.Flush()
		}
	})
}
