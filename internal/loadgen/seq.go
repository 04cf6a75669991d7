package loadgen

// maxMissing bounds the set of missing sequence numbers remembered for
// telling a late frame from a duplicate; beyond it, a late frame counts
// as a duplicate (it cannot be told apart any more).
const maxMissing = 1 << 16

// SeqCheck accounts one connection's frame sequence, which the server
// numbers from 0 and which should arrive as 0, 1, 2, ...
type SeqCheck struct {
	Next       int64  // next expected
	Received   uint64 // frames seen
	Lost       uint64 // skipped over and not (yet) seen late
	Duplicated uint64 // seen twice
	Reordered  uint64 // arrived after a later one (counted lost, then found)
	missing    map[int64]struct{}
}

// See accounts one arrival.
func (s *SeqCheck) See(seq int64) {
	s.Received++
	switch {
	case seq == s.Next:
		s.Next++
	case seq > s.Next:
		if s.missing == nil {
			s.missing = map[int64]struct{}{}
		}
		for m := s.Next; m < seq && len(s.missing) < maxMissing; m++ {
			s.missing[m] = struct{}{}
		}
		s.Lost += uint64(seq - s.Next)
		s.Next = seq + 1
	default:
		if _, ok := s.missing[seq]; ok {
			delete(s.missing, seq)
			s.Lost--
			s.Reordered++
		} else {
			s.Duplicated++
		}
	}
}

// SeqTotals adds up the checks of successive sessions of one connection
// (each reconnect starts a new sequence at 0).
type SeqTotals struct {
	Received   uint64 `json:"frames_received"`
	Lost       uint64 `json:"frames_lost"`
	Duplicated uint64 `json:"frames_duplicated"`
	Reordered  uint64 `json:"frames_reordered"`
}

// Add returns t plus what s counted.
func (t SeqTotals) Add(s *SeqCheck) SeqTotals {
	return SeqTotals{t.Received + s.Received, t.Lost + s.Lost, t.Duplicated + s.Duplicated, t.Reordered + s.Reordered}
}

// Plus adds two totals.
func (t SeqTotals) Plus(u SeqTotals) SeqTotals {
	return SeqTotals{t.Received + u.Received, t.Lost + u.Lost, t.Duplicated + u.Duplicated, t.Reordered + u.Reordered}
}
