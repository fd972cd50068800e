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
//   - sets Content-Type: text/event-stream; charset=utf-8, Cache-Control:
//     no-cache, no-transform, X-Accel-Buffering: no, and on HTTP/1.x
//     Connection: keep-alive;
//   - reads the last event ID (see [LastEventID]);
//   - sends the headers at once with a first comment (and a "retry:" field
//     with [WithRetry]), so that a browser's EventSource fires "open" before
//     the first event;
//   - stores a [Writer], configured by opts, for [GetWriter], [Send],
//     [SSEvent], [Comment] and [Stream].
//
// It accepts [WithWriteTimeout], [WithRetry], [WithRequireAccept],
// [WithLastEventIDQuery], and [WithHeartbeat] and [WithDone] as defaults for
// [Stream].
func Middleware(opts ...Option) gin.HandlerFunc {
	base := newConfig(opts)
	return func(c *gin.Context) {
		w, ok := openStream(c, &base)
		if !ok {
			return
		}
		c.Next()
		w.finish()
	}
}

// openStream does the middleware's work for one request: it checks the
// request, stores a Writer and sends the headers with a first comment. On
// failure it answers the request, aborts the chain and returns false.
func openStream(c *gin.Context, cfg *config) (*Writer, bool) {
	if !checkStream(c, cfg) {
		return nil, false
	}
	return startStream(c, cfg, true)
}

// checkStream refuses a request that cannot be streamed to: it answers the
// request, aborts the chain and returns false.
func checkStream(c *gin.Context, cfg *config) bool {
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

// okComment is the first thing a stream sends when it has no retry hint.
var okComment = []byte(": ok\n\n")

// startStream sends the headers with a first comment. With store, it keeps
// the Writer and the last event ID in the context for the handlers after
// it.
func startStream(c *gin.Context, cfg *config, store bool) (*Writer, bool) {
	w := newWriter(c.Writer, c.Request, cfg)
	if store {
		c.Set(lastEventIDKey, readLastEventID(c.Request, cfg.lastEventIDQuery))
		c.Set(writerKey, w)
	}

	first := okComment
	if cfg.retry > 0 {
		first = AppendComment(nil, "ok")
		first = append(first, "retry: "...)
		first = strconv.AppendInt(first, cfg.retry.Milliseconds(), 10)
		first = append(first, "\n\n"...)
	}
	if err := w.writeFrames(first, 0); err != nil {
		_ = c.Error(err)
		c.Abort()
		return nil, false
	}
	return w, true
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

// GetWriter returns the [Writer] of the request: the one [Middleware]
// prepared or, without the middleware, a new one with the default
// configuration and opts, which sets the headers with its first write.
func GetWriter(c *gin.Context, opts ...Option) *Writer {
	if v, ok := c.Get(writerKey); ok {
		if w, ok := v.(*Writer); ok {
			return w
		}
	}
	cfg := newConfig(opts)
	w := newWriter(c.Writer, c.Request, &cfg)
	c.Set(writerKey, w)
	return w
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
