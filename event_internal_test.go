package sse

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// hasBreak finds a CR or LF at any position of texts of every length it
// scans, and nothing in bytes that differ from them in one bit (such as
// 0x8A, 0x0B, 0x0E or 0x8D).
func TestHasBreak(t *testing.T) {
	others := []byte{'a', 0, 0x0B, 0x0C, 0x0E, 0x1A, 0x2A, 0x8A, 0x8D, 0xFF, 0x09, 0x4A}
	for n := 0; n <= shortText+9; n++ {
		base := make([]byte, n)
		for i := range base {
			base[i] = others[i%len(others)]
		}
		if hasBreak(string(base)) {
			t.Fatalf("hasBreak(%q) = true", base)
		}
		for i := range n {
			for _, c := range []byte{'\n', '\r'} {
				b := append([]byte(nil), base...)
				b[i] = c
				if !hasBreak(string(b)) {
					t.Fatalf("hasBreak(%q) = false", b)
				}
			}
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		b := make([]byte, r.IntN(shortText+1))
		for i := range b {
			b[i] = byte(r.IntN(16)) // many control bytes
		}
		if got, want := hasBreak(string(b)), strings.ContainsAny(string(b), "\r\n"); got != want {
			t.Fatalf("hasBreak(%q) = %v", b, got)
		}
	}
}
