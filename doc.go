// Package sse gives Gin applications Server-Sent Events that follow the
// WHATWG HTML standard exactly.
//
// [Middleware] prepares a route: it sets the event stream headers, checks
// that the response can be flushed, reads the client's Last-Event-ID and
// sends the headers at once so that a browser's EventSource fires "open".
// In the handler, [SSEvent], [Send] and [Comment] write one event and flush
// it, returning an error instead of failing silently, and [Stream] sends the
// values of a channel with heartbeats until the channel closes, the client
// leaves or the server shuts down.
//
// [Event] encodes an event without allocating for string and []byte data,
// splits multi-line data into several data lines so that the browser
// rebuilds exactly the original text, and refuses ids and names that would
// inject fields. [Decoder] parses a stream the way a browser does; package
// ssetest uses it to turn recorded or live responses into events for tests.
//
// Every error is a sentinel or wraps one, for [errors.Is].
package sse
