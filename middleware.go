package sse

import (
	"errors"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/gin-gonic/gin"
)

// Keys under which [Middleware] stores its values in the gin context.
const (
	writerKey      = "github.com/gin-sse/sse/writer"
	lastEventIDKey = "github.com/gin-sse/sse/last-event-id"
)

// ErrNotAcceptable reports a request whose Accept header does not allow
// text/event-stream, refused by [Middleware] with [WithRequireAccept].
var ErrNotAcceptable = errors.New("sse: request does not accept text/event-stream")

// ErrStreamStarted is returned by [NoContent] once the stream's headers were
// sent: the status can no longer change.
var ErrStreamStarted = errors.New("sse: stream already started")

// Middleware prepares a route for streaming. It
//
//   - answers 500 with a JSON error when the response cannot be flushed
//     ([ErrNoFlusher]), and 406 when [WithRequireAccept] is given and the
//     request's Accept header excludes text/event-stream;
//   - stores a [Writer] configured by opts, for [WriterFrom], [Send],
//     [SSEvent], [Comment], [Stream] and [Broker.Handler];
//   - reads the last event ID (see [LastEventID]);
//   - sets Content-Type: text/event-stream; charset=utf-8, Cache-Control:
//     no-cache, no-transform, X-Accel-Buffering: no, and on HTTP/1.x
//     Connection: keep-alive, and sends them at once with a first comment
//     (and the "retry:" field of [WithRetry]), so that a browser's
//     EventSource fires "open" before the first event.
//
// A request with a body (a POST stream, such as a chat completion) is the
// exception: its headers wait for the stream's first write, so that the
// handler can read the body first and still refuse it with an ordinary
// status (say, c.JSON(400, ...)), and the body stays readable after the
// stream started (full duplex on HTTP/1.x, where the server allows it).
func Middleware(opts ...MiddlewareOption) gin.HandlerFunc {
	cfg := defaultStreamConfig()
	applyStreamOpts(&cfg, opts)
	return func(c *gin.Context) {
		if !checkStream(c, &cfg) {
			return
		}
		w := newWriter(c.Writer, c.Request, &cfg)
		c.Set(lastEventIDKey, readLastEventID(c.Request, cfg.lastEventIDQuery))
		c.Set(writerKey, w)
		if hasBody(c.Request) {
			// Reading the body after the first write needs full duplex on
			// HTTP/1.x; HTTP/2 has it anyway, and a writer that does not
			// support it (a test recorder) has no connection to guard.
			if http.NewResponseController(c.Writer).EnableFullDuplex() == nil {
				// With full duplex, a body the handler left unread must be
				// closed (drained) before the handler returns: net/http
				// would otherwise start reading the connection again
				// after it, and panic on the next request of the
				// connection (golang/go#68560).
				defer func() { _ = c.Request.Body.Close() }()
			}
		} else if err := w.open(); err != nil {
			_ = c.Error(err)
			c.Abort()
			return
		}
		c.Next()
		w.finish()
	}
}

// hasBody reports whether r has a request body to read.
func hasBody(r *http.Request) bool {
	return r != nil && r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// checkStream refuses a request that cannot be streamed to: it answers the
// request, aborts the chain and returns false.
func checkStream(c *gin.Context, cfg *streamConfig) bool {
	if !canFlush(c.Writer) {
		abortJSON(c, http.StatusInternalServerError, ErrNoFlusher)
		return false
	}
	if cfg.requireAccept && c.Request != nil && !acceptsEventStream(c.Request.Header.Values("Accept")) {
		abortJSON(c, http.StatusNotAcceptable, ErrNotAcceptable)
		return false
	}
	return true
}

// abortJSON refuses the request with status and a JSON error body.
func abortJSON(c *gin.Context, status int, err error) {
	_ = c.Error(err)
	c.AbortWithStatusJSON(status, gin.H{"error": err.Error()})
}

// acceptsEventStream reports whether the Accept header values allow
// text/event-stream. No header at all allows anything.
func acceptsEventStream(values []string) bool {
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
			if err != nil {
				continue
			}
			if mt != "text/event-stream" && mt != "text/*" && mt != "*/*" {
				continue
			}
			if q, ok := params["q"]; ok {
				if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}

// readLastEventID reads the Last-Event-ID header, or the query parameter
// named query when the header is absent.
func readLastEventID(r *http.Request, query string) string {
	if r == nil {
		return ""
	}
	if v := r.Header.Values("Last-Event-ID"); len(v) > 0 {
		return v[0]
	}
	if query != "" && r.URL != nil {
		return queryValue(r.URL.RawQuery, query)
	}
	return ""
}

// maxQueryPairs is net/url's default limit on the pairs of a query.
const maxQueryPairs = 10000

// queryValue returns the first value of key in the raw query q, as
// url.ParseQuery and Values.Get would, without building the map: no
// allocation unless the value is escaped. Like ParseQuery it skips pairs
// that contain a semicolon or do not unescape, and finds nothing in a
// query of more than 10,000 pairs.
func queryValue(q, key string) string {
	if strings.Count(q, "&") >= maxQueryPairs {
		return ""
	}
	for q != "" {
		var pair string
		pair, q, _ = strings.Cut(q, "&")
		if strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if k, ok := unescape(k); !ok || k != key {
			continue
		}
		if v, ok := unescape(v); ok {
			return v
		}
	}
	return ""
}

// unescape is url.QueryUnescape, which allocates only for text that has
// something to unescape.
func unescape(s string) (string, bool) {
	if !strings.ContainsAny(s, "%+") {
		return s, true
	}
	u, err := url.QueryUnescape(s)
	return u, err == nil
}

// LastEventID returns the id the client last received, sent by a
// reconnecting EventSource in the Last-Event-ID header, or, when the header
// is absent, in the query parameter [DefaultLastEventIDQuery] (configurable
// on [Middleware] with [WithLastEventIDQuery]). It is "" on a first
// connection. The value is the client's: validate it before use.
func LastEventID(c *gin.Context) string {
	if v, ok := c.Get(lastEventIDKey); ok {
		s, _ := v.(string)
		return s
	}
	return readLastEventID(c.Request, DefaultLastEventIDQuery)
}

// WriterFrom returns the [Writer] of the request: the one [Middleware]
// prepared or, without the middleware, a new one with the default settings,
// which sets the headers with its first write.
func WriterFrom(c *gin.Context) *Writer {
	if w, ok := existingWriter(c); ok {
		return w
	}
	w := newWriter(c.Writer, c.Request, &defaultConfig)
	c.Set(writerKey, w)
	return w
}

// defaultConfig is the settings of streams without a Middleware.
var defaultConfig = defaultStreamConfig()

// existingWriter returns the Writer a Middleware in front prepared.
func existingWriter(c *gin.Context) (*Writer, bool) {
	if v, ok := c.Get(writerKey); ok {
		w, ok := v.(*Writer)
		return w, ok
	}
	return nil, false
}

// NoContent answers 204 No Content and aborts the chain. A browser's
// EventSource that gets 204 on a (re)connect stops reconnecting for good, so
// this is how a server tells a client the stream is over. Call it before
// anything is written: in a handler placed before [Middleware], or before
// the first event when the middleware is not used. Once the stream started
// it returns [ErrStreamStarted]; end the stream instead and answer 204 to
// the reconnect.
func NoContent(c *gin.Context) error {
	if c.Writer.Written() {
		return ErrStreamStarted
	}
	c.AbortWithStatus(http.StatusNoContent)
	c.Writer.WriteHeaderNow()
	return nil
}
