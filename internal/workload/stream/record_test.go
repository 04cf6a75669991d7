package stream

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestRecordRoundTrip(t *testing.T) {
	b := make([]byte, RecordSize)
	in := Record{Kind: KindServer, Seq: 1<<40 + 7, SentNs: 1234567890123}
	in.Marshal(b)
	out, err := ReadRecord(bytes.NewReader(b), make([]byte, RecordSize))
	if err != nil || out != in {
		t.Fatalf("round trip: %+v %v, want %+v", out, err, in)
	}
	b[1] = 0
	if _, err := ReadRecord(bytes.NewReader(b), make([]byte, RecordSize)); err == nil {
		t.Fatal("a record without the marker was accepted")
	}
}

func TestSeqCheck(t *testing.T) {
	var s SeqCheck
	for _, q := range []uint64{1, 2, 3, 5, 6, 4, 6, 9} {
		s.See(q)
	}
	// 4 late (reordered, not lost), 6 duplicated, 7 and 8 lost.
	if s.Received != 8 || s.Lost != 2 || s.Reordered != 1 || s.Duplicated != 1 || s.Next != 10 {
		t.Fatalf("got %+v", s)
	}
}

func TestMaxGapIn(t *testing.T) {
	t0 := time.Unix(1000, 0)
	s := ConnStats{Gaps: []Gap{
		{Kind: KindEcho, End: t0.Add(1 * time.Second), Len: 300 * time.Millisecond},
		{Kind: KindServer, End: t0.Add(1 * time.Second), Len: 200 * time.Millisecond},
		{Kind: KindEcho, End: t0.Add(5 * time.Second), Len: 800 * time.Millisecond},
	}}
	if g := s.MaxGapIn(0, t0, t0.Add(2*time.Second)); g != 300*time.Millisecond {
		t.Errorf("window 1: %v", g)
	}
	if g := s.MaxGapIn(KindServer, t0, t0.Add(2*time.Second)); g != 200*time.Millisecond {
		t.Errorf("window 1, server stream only: %v", g)
	}
	// The third gap started at 4.2 s and ended at 5 s: it belongs to a
	// window containing its end, not to one that only saw its start.
	if g := s.MaxGapIn(0, t0.Add(4*time.Second), t0.Add(4500*time.Millisecond)); g != 0 {
		t.Errorf("window 2 (gap not ended yet): %v", g)
	}
	if g := s.MaxGapIn(0, t0.Add(4500*time.Millisecond), t0.Add(6*time.Second)); g != 800*time.Millisecond {
		t.Errorf("window 2b: %v", g)
	}
	if g := s.MaxGapIn(0, t0.Add(6*time.Second), t0.Add(7*time.Second)); g != 0 {
		t.Errorf("window 3: %v", g)
	}
}

func TestUnanswered(t *testing.T) {
	s := ConnStats{Sent: 10}
	for q := uint64(1); q <= 8; q++ {
		s.Echo.See(q)
	}
	s.Echo.See(8)
	if u := s.Unanswered(); u != 2 {
		t.Fatalf("unanswered %d, want 2", u)
	}
}

func TestBallastCatchesACorruptedPage(t *testing.T) {
	b := NewBallast(1)
	if err := b.Verify(); err != nil {
		t.Fatal(err)
	}
	b.buf[5*pageSize+17] ^= 1
	if err := b.Verify(); err == nil || !strings.Contains(err.Error(), "page 5 ") {
		t.Fatalf("a flipped bit in page 5: %v", err)
	}
}
