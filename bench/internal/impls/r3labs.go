package impls

import (
	"bytes"
	"net/http"
	"sync/atomic"

	"github.com/gin-gonic/gin"
	r3 "github.com/r3labs/sse/v2"
)

// r3labsImpl is github.com/r3labs/sse/v2's server with its defaults (a
// stream created up front, the event log for replay), mounted in gin.
type r3labsImpl struct {
	srv  *r3.Server
	r    *gin.Engine
	subs atomic.Int64
}

func newR3labs() *r3labsImpl {
	x := &r3labsImpl{}
	srv := r3.New()
	// Called (in a goroutine) after the subscriber is registered.
	srv.OnSubscribe = func(string, *r3.Subscriber) { x.subs.Add(1) }
	srv.OnUnsubscribe = func(string, *r3.Subscriber) { x.subs.Add(-1) }
	srv.CreateStream("t")
	x.srv = srv
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/events", gin.WrapH(srv)) // the stream is chosen by ?stream=t
	x.r = r
	return x
}

func (x *r3labsImpl) Handler() http.Handler { return x.r }

func (x *r3labsImpl) Publish(_ int, data []byte) error {
	// The event log gives the event its id.
	x.srv.Publish("t", &r3.Event{Data: bytes.Clone(data)})
	return nil
}

func (x *r3labsImpl) Subscribers() int { return int(x.subs.Load()) }

func (x *r3labsImpl) Close() { x.srv.Close() }
