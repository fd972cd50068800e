package sse_test

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	ginsse "github.com/gin-contrib/sse"
	"github.com/gin-sse/sse"
)

// benchData is a 120-byte single-line payload.
var benchData = strings.Repeat("The quick brown fox jumps over the lazy dog. ", 3)[:120]

// benchMultiline is benchData with four LFs inside (five lines).
var benchMultiline = benchData[:24] + "\n" + benchData[24:48] + "\n" + benchData[48:72] + "\n" + benchData[72:96] + "\n" + benchData[96:]

type benchPayload struct {
	ID      int     `json:"id"`
	Name    string  `json:"name"`
	Price   float64 `json:"price"`
	InStock bool    `json:"in_stock"`
}

func benchEvent(data any) sse.Event {
	return sse.Event{ID: "42", Event: "update", Data: data}
}

// benchAppend measures AppendTo of ev into a reused buffer.
func benchAppend(b *testing.B, ev sse.Event) {
	wire, err := ev.AppendTo(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(wire)))
	dst := make([]byte, 0, 8192)
	b.ResetTimer()
	for b.Loop() {
		dst, err = ev.AppendTo(dst[:0])
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	b.Run("string", func(b *testing.B) { benchAppend(b, benchEvent(benchData)) })
	b.Run("bytes", func(b *testing.B) { benchAppend(b, benchEvent([]byte(benchData))) })
	b.Run("multiline", func(b *testing.B) { benchAppend(b, benchEvent(benchMultiline)) })
	b.Run("json", func(b *testing.B) {
		benchAppend(b, benchEvent(benchPayload{ID: 42, Name: "widget", Price: 9.99, InStock: true}))
	})
	b.Run("copy", func(b *testing.B) { benchCopy(b, benchEvent(benchData)) })
	big := strings.Repeat(benchData, 35)[:4096]
	b.Run("string-4KiB", func(b *testing.B) { benchAppend(b, benchEvent(big)) })
	// Short lines ending in CR only: each byte is scanned a bounded number
	// of times, so the cost stays linear in the size.
	crLines := strings.Repeat("0123456\r", 8192)
	b.Run("cr-lines-64KiB", func(b *testing.B) { benchAppend(b, benchEvent(crLines)) })
	b.Run("copy-4KiB", func(b *testing.B) { benchCopy(b, benchEvent(big)) })
}

// benchCopy measures copying the encoded bytes of ev into a reused buffer:
// the floor that encoding is compared with.
func benchCopy(b *testing.B, ev sse.Event) {
	wire, err := ev.AppendTo(nil)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(wire)))
	dst := make([]byte, 0, 8192)
	b.ResetTimer()
	for b.Loop() {
		dst = append(dst[:0], wire...)
	}
	_ = dst
}

func BenchmarkGinContribEncode(b *testing.B) {
	b.Run("gin-contrib", func(b *testing.B) {
		ev := ginsse.Event{Id: "42", Event: "update", Data: benchData}
		var buf bytes.Buffer
		if err := ginsse.Encode(&buf, ev); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.SetBytes(int64(buf.Len()))
		b.ResetTimer()
		for b.Loop() {
			buf.Reset()
			if err := ginsse.Encode(&buf, ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("gin-sse", func(b *testing.B) {
		ev := benchEvent(benchData)
		var buf bytes.Buffer
		buf.Grow(1024)
		b.ReportAllocs()
		b.SetBytes(int64(len(ev.String())))
		b.ResetTimer()
		for b.Loop() {
			buf.Reset()
			// Append into the buffer's spare capacity, then commit it with
			// Write, as an encoder writing into a bytes.Buffer would.
			p, err := ev.AppendTo(buf.AvailableBuffer())
			if err != nil {
				b.Fatal(err)
			}
			buf.Write(p)
		}
	})
}

// discardFlusher is an http.ResponseWriter that drops everything written to
// it and can flush.
type discardFlusher struct{ h http.Header }

func (d *discardFlusher) Header() http.Header         { return d.h }
func (d *discardFlusher) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardFlusher) WriteHeader(int)             {}
func (d *discardFlusher) Flush()                      {}

func BenchmarkWriterSend(b *testing.B) {
	ev := benchEvent(benchData)
	w := sse.NewWriter(&discardFlusher{h: http.Header{}}, nil)
	b.ReportAllocs()
	b.SetBytes(int64(len(ev.String())))
	b.ResetTimer()
	for b.Loop() {
		if err := w.Send(ev); err != nil {
			b.Fatal(err)
		}
	}
}
