package stream

import (
	"encoding/binary"
	"errors"
	"io"
)

// RecordSize is the size of every record on the wire.
const RecordSize = 32

// Record kinds.
const (
	KindClient = 'C' // client -> server
	KindEcho   = 'E' // server -> client, echo of a client record
	KindServer = 'S' // server -> client, the server's own stream
)

// Record is one unit of the workload.
type Record struct {
	Kind   byte
	Seq    uint64
	SentNs int64 // sender's clock
}

var errBadRecord = errors.New("stream: malformed record")

// Marshal encodes r into b (len RecordSize).
func (r Record) Marshal(b []byte) {
	clear(b[:RecordSize])
	b[0] = r.Kind
	b[1] = 0xcf
	binary.BigEndian.PutUint64(b[8:], r.Seq)
	binary.BigEndian.PutUint64(b[16:], uint64(r.SentNs))
}

// ReadRecord reads and decodes one record.
func ReadRecord(rd io.Reader, buf []byte) (Record, error) {
	if _, err := io.ReadFull(rd, buf[:RecordSize]); err != nil {
		return Record{}, err
	}
	if buf[1] != 0xcf {
		return Record{}, errBadRecord
	}
	return Record{Kind: buf[0], Seq: binary.BigEndian.Uint64(buf[8:]), SentNs: int64(binary.BigEndian.Uint64(buf[16:]))}, nil
}

// SeqCheck accounts a sequence that should arrive as 1, 2, 3, ...
type SeqCheck struct {
	Next       uint64 // next expected
	Received   uint64
	Lost       uint64 // skipped over (never seen before a later one)
	Duplicated uint64
	Reordered  uint64 // arrived after a later one (was counted lost, now found)
	missing    map[uint64]bool
}

// See accounts one arrival.
func (s *SeqCheck) See(seq uint64) {
	if s.Next == 0 {
		s.Next = 1
	}
	s.Received++
	switch {
	case seq == s.Next:
		s.Next++
	case seq > s.Next:
		if s.missing == nil {
			s.missing = map[uint64]bool{}
		}
		for m := s.Next; m < seq && len(s.missing) < 1<<20; m++ {
			s.missing[m] = true
		}
		s.Lost += seq - s.Next
		s.Next = seq + 1
	default:
		if s.missing[seq] {
			delete(s.missing, seq)
			s.Lost--
			s.Reordered++
		} else {
			s.Duplicated++
		}
	}
}
