// Package ssemetrics exposes what a gin-sse broker does as Prometheus
// metrics. It is an [sse.Observer] and a [prometheus.Collector]:
//
//	m := ssemetrics.New()
//	prometheus.MustRegister(m)
//	b, err := sse.NewBroker(sse.WithObserver(m))
//	r.GET("/metrics", gin.WrapH(promhttp.Handler()))
//
// The import path is github.com/gin-sse/sse/metrics; it is a module of its
// own so that the core depends on gin only.
//
// Metrics (with [WithNamespace], prefixed by the namespace and "_"):
//
//	sse_subscribers                          gauge     subscribers now
//	sse_subscriptions_total                  counter   subscribers that joined
//	sse_unsubscriptions_total{reason}        counter   subscribers that left, by why
//	sse_events_published_total               counter   events published
//	sse_publish_errors_total                 counter   publishes that failed
//	sse_publish_duration_seconds             histogram time a publish took
//	sse_events_delivered_total               counter   events written to streams
//	sse_events_lost_total{reason}            counter   events-lost signals sent, by reason (sse.LostReason)
//	sse_backend_errors_total{op}             counter   failed backend calls (publish, replay, watch, presence)
//	sse_backend_delivery_lag_seconds         histogram from an event's publish to its delivery by the backend (Redis)
//
// Every label has a small fixed set of values. Per-topic series come only
// with [WithTopicLabel], whose function maps a topic to a label value of
// the application's choosing (say, "user:42" to "user"): keep its values
// few.
package ssemetrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/gin-sse/sse"
)

// Metrics records a broker's work. Create it with [New], register it with
// a Prometheus registry and give it to the broker with sse.WithObserver. One
// Metrics may observe several brokers.
type Metrics struct {
	sse.NopObserver
	topicLabel func(string) string

	subscribers     *prometheus.GaugeVec
	subscriptions   *prometheus.CounterVec
	unsubscriptions *prometheus.CounterVec
	published       *prometheus.CounterVec
	publishErrors   *prometheus.CounterVec
	publishDuration *prometheus.HistogramVec
	delivered       prometheus.Counter
	lost            *prometheus.CounterVec
	backendErrors   *prometheus.CounterVec
	lag             prometheus.Histogram
}

var (
	_ sse.Observer         = (*Metrics)(nil)
	_ prometheus.Collector = (*Metrics)(nil)
)

// Option configures [New].
type Option func(*config)

type config struct {
	namespace   string
	topicLabel  func(string) string
	constLabels prometheus.Labels
	buckets     []float64
}

// WithNamespace prefixes every metric's name with ns and "_"
// (ns_sse_subscribers, ...).
func WithNamespace(ns string) Option { return func(c *config) { c.namespace = ns } }

// WithConstLabels adds labels with fixed values to every metric, to tell
// several brokers of one process apart (say, {"broker": "chat"}).
func WithConstLabels(l prometheus.Labels) Option { return func(c *config) { c.constLabels = l } }

// WithTopicLabel adds a "topic" label to the subscriber and publish
// metrics, whose value is fn(topic). Return few distinct values: every
// one is a series of its own. A subscriber of several topics counts once
// for each distinct value of its topics.
func WithTopicLabel(fn func(topic string) string) Option {
	return func(c *config) { c.topicLabel = fn }
}

// WithBuckets sets the buckets, in seconds, of the two histograms
// (publish duration and backend delivery lag). Default
// [prometheus.DefBuckets] (5 ms to 10 s), with 0.5 ms, 1 ms and 2.5 ms
// added for an in-memory broker's publishes.
func WithBuckets(b []float64) Option { return func(c *config) { c.buckets = b } }

// New returns the metrics, not registered yet.
func New(opts ...Option) *Metrics {
	c := config{buckets: append([]float64{.0005, .001, .0025}, prometheus.DefBuckets...)}
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	var topic []string
	if c.topicLabel != nil {
		topic = []string{"topic"}
	}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: c.namespace, Subsystem: "sse", Name: name, Help: help, ConstLabels: c.constLabels}, labels)
	}
	histogram := func(name, help string, labels ...string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: c.namespace, Subsystem: "sse", Name: name, Help: help, ConstLabels: c.constLabels, Buckets: c.buckets}, labels)
	}
	m := &Metrics{
		topicLabel: c.topicLabel,
		subscribers: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: c.namespace, Subsystem: "sse", Name: "subscribers",
			Help: "Subscribers connected now (HTTP streams and Go subscriptions).", ConstLabels: c.constLabels}, topic),
		subscriptions:   counter("subscriptions_total", "Subscribers that joined.", topic...),
		unsubscriptions: counter("unsubscriptions_total", "Subscribers that left, by reason: client_gone, shutdown, write_timeout, write_failed, closed, context or other.", "reason"),
		published:       counter("events_published_total", "Events published.", topic...),
		publishErrors:   counter("publish_errors_total", "Publishes that failed.", topic...),
		publishDuration: histogram("publish_duration_seconds", "Time a publish took, with a backend its round trip to the store.", topic...),
		delivered:       counter("events_delivered_total", "Events written to streams or handed to Go subscriptions.").WithLabelValues(),
		lost:            counter("events_lost_total", "events-lost signals sent to subscribers, by the reason they give: malformed, expired, overrun, data-loss or unknown.", "reason"),
		backendErrors:   counter("backend_errors_total", "Backend calls that failed, by operation: publish, replay, watch or presence.", "op"),
		lag:             histogram("backend_delivery_lag_seconds", "Time from an event's publish to its delivery to this process by the backend, by the store's clock.").WithLabelValues().(prometheus.Histogram),
	}
	if topic == nil { // their one series, at zero before anything happened
		m.subscribers.WithLabelValues()
		m.subscriptions.WithLabelValues()
		m.published.WithLabelValues()
		m.publishErrors.WithLabelValues()
		m.publishDuration.WithLabelValues()
	}
	return m
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.subscribers, m.subscriptions, m.unsubscriptions, m.published, m.publishErrors,
		m.publishDuration, m.delivered, m.lost, m.backendErrors, m.lag}
}

// Describe implements [prometheus.Collector].
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements [prometheus.Collector].
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

// labels returns the label values of topics: none without WithTopicLabel,
// else each distinct mapped value.
func (m *Metrics) labels(topics []string) [][]string {
	if m.topicLabel == nil {
		return [][]string{nil}
	}
	var out [][]string
	seen := make(map[string]bool, len(topics))
	for _, t := range topics {
		v := m.topicLabel(t)
		if !seen[v] {
			seen[v] = true
			out = append(out, []string{v})
		}
	}
	return out
}

// Subscribed implements [sse.Observer].
func (m *Metrics) Subscribed(info sse.SubscriberInfo) {
	for _, l := range m.labels(info.Topics) {
		m.subscribers.WithLabelValues(l...).Inc()
		m.subscriptions.WithLabelValues(l...).Inc()
	}
}

// Unsubscribed implements [sse.Observer].
func (m *Metrics) Unsubscribed(info sse.SubscriberInfo, reason error) {
	for _, l := range m.labels(info.Topics) {
		m.subscribers.WithLabelValues(l...).Dec()
	}
	m.unsubscriptions.WithLabelValues(UnsubscribeReason(reason)).Inc()
}

// UnsubscribeReason is the reason label of an unsubscription.
func UnsubscribeReason(err error) string {
	switch {
	case err == nil, errors.Is(err, sse.ErrSubscriptionClosed):
		return "closed"
	case errors.Is(err, sse.ErrClientGone):
		return "client_gone"
	case errors.Is(err, sse.ErrBrokerClosed):
		return "shutdown"
	case errors.Is(err, sse.ErrWriteTimeout):
		return "write_timeout"
	case errors.Is(err, sse.ErrWriteFailed):
		return "write_failed"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "context"
	}
	return "other"
}

// Published implements [sse.Observer].
func (m *Metrics) Published(topics []string, took time.Duration, err error) {
	for _, l := range m.labels(topics) {
		if err != nil {
			m.publishErrors.WithLabelValues(l...).Inc()
			continue
		}
		m.published.WithLabelValues(l...).Inc()
		m.publishDuration.WithLabelValues(l...).Observe(took.Seconds())
	}
}

// Delivered implements [sse.Observer].
func (m *Metrics) Delivered(n int) { m.delivered.Add(float64(n)) }

// Lost implements [sse.Observer].
func (m *Metrics) Lost(reason error) { m.lost.WithLabelValues(sse.LostReason(reason)).Inc() }

// BackendError implements [sse.Observer].
func (m *Metrics) BackendError(op string, _ error) { m.backendErrors.WithLabelValues(op).Inc() }

// BackendDelivered implements [sse.Observer].
func (m *Metrics) BackendDelivered(lag time.Duration) { m.lag.Observe(max(lag, 0).Seconds()) }
