package impls

import "testing"

func TestAppendPayload(t *testing.T) {
	got := string(AppendPayload(nil, 42, 1700000000123456789, 40))
	want := "42 1700000000123456789 xxxxxxxxxxxxxxxxx"
	if got != want || len(got) != 40 {
		t.Fatalf("got %q, want %q", got, want)
	}
	if got := string(AppendPayload(nil, 7, 5, 0)); got != "7 5 " {
		t.Fatalf("got %q", got)
	}
}
