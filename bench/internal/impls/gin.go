package impls

import (
	"io"
	"net/http"
	"sync"

	"github.com/gin-gonic/gin"
)

// ginBuiltin is the fan-out a Gin user writes around gin's own c.Stream
// and c.SSEvent: a registry of per-client buffered channels under a mutex.
type ginBuiltin struct {
	r       *gin.Engine
	qsize   int
	mu      sync.RWMutex
	clients map[*ginClient]struct{}
}

type ginClient struct {
	ch   chan string
	done chan struct{} // closed when the handler returns
}

func newGin(o Options) *ginBuiltin {
	g := &ginBuiltin{qsize: min(o.QueueSize, 4096), clients: make(map[*ginClient]struct{})}
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.GET("/events", g.handle)
	g.r = r
	return g
}

func (g *ginBuiltin) handle(c *gin.Context) {
	cl := &ginClient{ch: make(chan string, g.qsize), done: make(chan struct{})}
	g.mu.Lock()
	g.clients[cl] = struct{}{}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.clients, cl)
		g.mu.Unlock()
	}()
	defer close(cl.done)

	c.Header("Cache-Control", "no-cache")
	c.Header("Connection", "keep-alive")
	ctx := c.Request.Context()
	c.Stream(func(io.Writer) bool {
		select {
		case m := <-cl.ch:
			c.SSEvent("message", m)
			return true
		case <-ctx.Done():
			return false
		}
	})
}

func (g *ginBuiltin) Handler() http.Handler { return g.r }

// Publish blocks on a full channel (back-pressure, no loss) unless the
// client left. c.SSEvent sends no id, so seq is only in the data.
func (g *ginBuiltin) Publish(_ int, data []byte) error {
	m := string(data)
	g.mu.RLock()
	defer g.mu.RUnlock()
	for cl := range g.clients {
		select {
		case cl.ch <- m:
		case <-cl.done:
		}
	}
	return nil
}

func (g *ginBuiltin) Subscribers() int {
	g.mu.RLock()
	defer g.mu.RUnlock()
	return len(g.clients)
}

func (g *ginBuiltin) Close() {}
