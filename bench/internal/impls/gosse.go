package impls

import (
	"context"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	gosse "github.com/tmaxmax/go-sse"
)

// goSSE is github.com/tmaxmax/go-sse's Server with its default provider,
// Joe, mounted in gin. Its only addition is a replayer that replays
// nothing (as Joe's default one) but counts subscriptions: Joe calls it
// in its loop just before it adds the subscriber, so every event published
// after the count went up reaches that subscriber.
type goSSE struct {
	srv  *gosse.Server
	r    *gin.Engine
	subs atomic.Int64
}

type countingReplayer struct{ n *atomic.Int64 }

func (c countingReplayer) Put(m *gosse.Message, _ []string) (*gosse.Message, error) { return m, nil }

func (c countingReplayer) Replay(gosse.Subscription) error {
	c.n.Add(1)
	return nil
}

// countingProvider counts a subscription out when it ends.
type countingProvider struct {
	*gosse.Joe
	n *atomic.Int64
}

func (p countingProvider) Subscribe(ctx context.Context, sub gosse.Subscription) error {
	defer p.n.Add(-1)
	return p.Joe.Subscribe(ctx, sub)
}

func newGoSSE() *goSSE {
	x := &goSSE{}
	joe := &gosse.Joe{Replayer: countingReplayer{&x.subs}}
	x.srv = &gosse.Server{Provider: countingProvider{joe, &x.subs}}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/events", gin.WrapH(x.srv))
	x.r = r
	return x
}

func (x *goSSE) Handler() http.Handler { return x.r }

func (x *goSSE) Publish(seq int, data []byte) error {
	m := &gosse.Message{ID: gosse.ID(strconv.Itoa(seq))}
	m.AppendData(string(data))
	return x.srv.Publish(m) // default topic
}

func (x *goSSE) Subscribers() int { return int(x.subs.Load()) }

// Close shuts go-sse down once its subscriptions have ended (for at most
// a second). Joe's Subscribe returns as soon as a shutdown begins, without
// synchronising with Joe's loop, which wrote to that subscriber: its
// handler then returns with no order between those writes and net/http's
// last one, a data race the race detector reported (rarely: when TestRun
// closed the implementation before the server saw its clients leave).
func (x *goSSE) Close() {
	for end := time.Now().Add(time.Second); x.subs.Load() > 0 && time.Now().Before(end); {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = x.srv.Shutdown(ctx)
}
