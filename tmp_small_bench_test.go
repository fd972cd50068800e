package sse

import (
	"context"
	"testing"
)

func BenchmarkTmpPublishSmall(b *testing.B) {
	br, err := NewBroker(WithQueueSize(1 << 30))
	if err != nil {
		b.Fatal(err)
	}
	s, _, _ := br.subscribe(context.Background(), []string{"t"}, "", "", nil)
	data := []byte("123456 1764620000000000000 ")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := br.Publish("t", Event{Data: data}); err != nil {
			b.Fatal(err)
		}
		if i++; i%64 == 0 {
			s.take()
		}
	}
	br.remove(s, false)
	_ = br.Shutdown(context.Background())
}
