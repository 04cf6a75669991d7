package handoff

import (
	"encoding/hex"
	"testing"
)

// A datagram held in a container's namespace, as NFLOG gave it: its UDP
// checksum is the partial sum its sender's veth left (the same for three
// different payloads), and the complete one is what a receiver checks.
func TestFixChecksums(t *testing.T) {
	f, _ := hex.DecodeString("0242c612000302cf000000640800" + "450000245c7b40003f1152c2c6120064c6120003b4e11b5900108cad66726f7a656e2d31")
	fixChecksums(f)
	ip := f[14:]
	if got := fold(sum(ip[:20], 0)); got != 0xffff {
		t.Errorf("IPv4 header sums to %#x, want 0xffff", got)
	}
	l4 := ip[20:]
	if got := fold(sum(l4, sum(ip[12:20], 0)+17+uint32(len(l4)))); got != 0xffff {
		t.Errorf("UDP datagram sums to %#x with its pseudo-header, want 0xffff", got)
	}
	if hex.EncodeToString(l4[6:8]) == "8cad" {
		t.Error("the partial checksum was kept")
	}
}
