// Package sse gives Gin applications Server-Sent Events that follow the
// WHATWG HTML standard exactly.
//
// # Fan-out with a Broker
//
// A [Broker] sends published events to the clients subscribed to their
// topics. [Broker.Handler] is the route of the streams; [Broker.Publish]
// is called from anywhere:
//
//	b, _ := sse.NewBroker()
//	r.GET("/events", b.Handler(sse.TopicsFromQuery("topic")))
//	b.Publish(ctx, "kitchen", sse.Event{Event: "kitchen", Data: state})
//
// Every event gets an id. A browser that reconnects sends the last one in
// Last-Event-ID and gets exactly the events it missed, then the live ones;
// what cannot be replayed is signalled with the [LostEventName] event,
// never skipped silently. Go code subscribes with [Broker.Subscribe]. With
// a [Backend] over Redis (package github.com/gin-sse/sse/redis), brokers
// in several processes share topics, ids and replay.
//
// # One stream per request
//
// [Middleware] prepares a route: it sets the event stream headers, checks
// that the response can be flushed, reads the client's Last-Event-ID and
// sends the headers at once so that a browser's EventSource fires "open"
// (a request with a body, such as a POST to a language model endpoint,
// keeps them until the first write, so that the handler can read the body
// and still refuse it). In the handler, [SSEvent], [Send] and [Comment]
// write one event and flush it, returning an error instead of failing
// silently, and [Stream] and [StreamSeq] send the values of a channel or a
// sequence with heartbeats until it ends, the client leaves or the server
// shuts down.
//
// # Options
//
// Each entry point takes its own option type ([BrokerOption],
// [HandlerOption], [MiddlewareOption], [WriterOption], [StreamOption],
// [DecoderOption]), so an option given where it does not apply is a
// compile error rather than a setting silently ignored.
//
// # Encoding and decoding
//
// [Event] encodes an event without allocating for string and []byte data,
// splits multi-line data into several data lines so that the browser
// rebuilds exactly the original text, and refuses ids and names that would
// inject fields. [Decoder] parses a stream the way a browser does, into
// [ReceivedEvent] values; package ssetest uses it to turn recorded or live
// responses into events for tests, and package client is an EventSource
// for Go programs.
//
// Every error is a sentinel or wraps one, for [errors.Is], or is a
// [*StatusError], for [errors.As].
package sse
