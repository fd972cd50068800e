package impls

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
)

// ginSSE is this project's broker, used as its README shows.
type ginSSE struct {
	b *sse.Broker
	r *gin.Engine
}

// newGinSSE runs the broker with its default options, as the README's
// quick start does (extra only chooses a backend).
func newGinSSE(_ Options, extra ...sse.BrokerOption) (*ginSSE, error) {
	b, err := sse.NewBroker(extra...)
	if err != nil {
		return nil, err
	}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/events", b.Handler(sse.TopicsFromQuery("stream")))
	return &ginSSE{b: b, r: r}, nil
}

func (g *ginSSE) Handler() http.Handler { return g.r }

func (g *ginSSE) Publish(_ int, data []byte) error {
	// The broker gives the event its id. It encodes the event before
	// Publish returns, so data (a reused buffer) needs no copy.
	_, err := g.b.Publish(context.Background(), "t", sse.Event{Data: data})
	return err
}

func (g *ginSSE) PublishTopic(topic string, _ int, data []byte) error {
	_, err := g.b.Publish(context.Background(), topic, sse.Event{Data: data})
	return err
}

func (g *ginSSE) Subscribers() int { return g.b.Subscribers("") }

// Retained is the memory of the broker's history.
func (g *ginSSE) Retained() int { return g.b.Stats().RetainedBytes }

func (g *ginSSE) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = g.b.Shutdown(ctx)
}
