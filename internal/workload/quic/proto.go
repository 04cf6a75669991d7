package quic

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
)

// ALPN is the TLS application protocol both sides insist on, so nothing
// else that speaks QUIC can be mistaken for the workload.
const ALPN = "cflow-quic"

// Message kinds: the first byte of every message.
const (
	KindRequest  = 'Q' // client -> server, first message of a request stream
	KindResponse = 'R' // server -> client, the answer on the same stream
	KindDownload = 'D' // client -> server, first message of the download stream
	KindChunk    = 'K' // server -> client, on the download stream
)

const marker = 0xcf

// Sizes on the wire.
const (
	RequestSize     = 24 // kind, marker, pad, seq, client ns
	ResponseSize    = 32 // a request's fields plus the server's response number
	ChunkHeaderSize = 32
	DatagramSize    = 16 // seq, client ns
	// MaxChunkPayload bounds what a reader allocates for a chunk, so a
	// corrupted length cannot make it allocate gigabytes.
	MaxChunkPayload = 1 << 20
)

var errBadMessage = errors.New("quic workload: malformed message")

// Request is the first (and only) message a client sends on a stream. On
// the download stream its Seq carries the chunk payload size asked for.
type Request struct {
	Kind     byte
	Seq      uint64
	ClientNs int64
}

// Marshal encodes r into b (len RequestSize).
func (r Request) Marshal(b []byte) {
	clear(b[:RequestSize])
	b[0], b[1] = r.Kind, marker
	binary.BigEndian.PutUint64(b[8:], r.Seq)
	binary.BigEndian.PutUint64(b[16:], uint64(r.ClientNs))
}

// ReadRequest reads one request.
func ReadRequest(rd io.Reader) (Request, error) {
	var b [RequestSize]byte
	if _, err := io.ReadFull(rd, b[:]); err != nil {
		return Request{}, err
	}
	if b[1] != marker || (b[0] != KindRequest && b[0] != KindDownload) {
		return Request{}, errBadMessage
	}
	return Request{Kind: b[0], Seq: binary.BigEndian.Uint64(b[8:]), ClientNs: int64(binary.BigEndian.Uint64(b[16:]))}, nil
}

// Response answers a request.
type Response struct {
	Seq       uint64 // the request's
	ClientNs  int64  // the request's
	ServerSeq uint64 // the server's count of responses on this connection
}

// Marshal encodes r into b (len ResponseSize).
func (r Response) Marshal(b []byte) {
	clear(b[:ResponseSize])
	b[0], b[1] = KindResponse, marker
	binary.BigEndian.PutUint64(b[8:], r.Seq)
	binary.BigEndian.PutUint64(b[16:], uint64(r.ClientNs))
	binary.BigEndian.PutUint64(b[24:], r.ServerSeq)
}

// ReadResponse reads one response.
func ReadResponse(rd io.Reader) (Response, error) {
	var b [ResponseSize]byte
	if _, err := io.ReadFull(rd, b[:]); err != nil {
		return Response{}, err
	}
	if b[0] != KindResponse || b[1] != marker {
		return Response{}, errBadMessage
	}
	return Response{Seq: binary.BigEndian.Uint64(b[8:]), ClientNs: int64(binary.BigEndian.Uint64(b[16:])), ServerSeq: binary.BigEndian.Uint64(b[24:])}, nil
}

// Chunk is one unit of the download stream. Its payload is a function of
// its sequence number and its checksum covers header and payload, so a
// chunk that arrives torn, shifted or from another connection is caught,
// not just one that is missing.
type Chunk struct {
	Seq      uint64
	ServerNs int64
	Payload  []byte
}

func fillPayload(p []byte, seq uint64) {
	x := seq*0x9e3779b97f4a7c15 + 1
	for i := range p {
		p[i] = byte(x >> (8 * (i % 8)))
		if i%8 == 7 {
			x = x*6364136223846793005 + 1442695040888963407
		}
	}
}

// MarshalChunk encodes chunk seq with a payload of n bytes into buf (grown
// as needed) and returns the encoded bytes.
func MarshalChunk(buf []byte, seq uint64, serverNs int64, n int) []byte {
	size := ChunkHeaderSize + n
	if cap(buf) < size {
		buf = make([]byte, size)
	}
	b := buf[:size]
	clear(b[:ChunkHeaderSize])
	b[0], b[1] = KindChunk, marker
	binary.BigEndian.PutUint32(b[4:], uint32(n))
	binary.BigEndian.PutUint64(b[8:], seq)
	binary.BigEndian.PutUint64(b[16:], uint64(serverNs))
	fillPayload(b[ChunkHeaderSize:], seq)
	binary.BigEndian.PutUint32(b[24:], chunkCRC(b))
	return b
}

// chunkCRC covers everything but the checksum field itself.
func chunkCRC(b []byte) uint32 {
	h := crc32.NewIEEE()
	h.Write(b[:24])
	h.Write(b[28:])
	return h.Sum32()
}

// ErrCorruptChunk is returned for a chunk whose checksum or payload is wrong.
var ErrCorruptChunk = errors.New("quic workload: corrupt chunk")

// ReadChunk reads one chunk into buf (grown as needed). A corrupt chunk is
// returned with ErrCorruptChunk: the stream is still aligned (the length
// was read), so the caller may count it and go on.
func ReadChunk(rd io.Reader, buf []byte) (Chunk, []byte, error) {
	if cap(buf) < ChunkHeaderSize {
		buf = make([]byte, ChunkHeaderSize)
	}
	if _, err := io.ReadFull(rd, buf[:ChunkHeaderSize]); err != nil {
		return Chunk{}, buf, err
	}
	if buf[0] != KindChunk || buf[1] != marker {
		return Chunk{}, buf, errBadMessage
	}
	n := int(binary.BigEndian.Uint32(buf[4:]))
	if n > MaxChunkPayload {
		return Chunk{}, buf, errBadMessage
	}
	if cap(buf) < ChunkHeaderSize+n {
		nb := make([]byte, ChunkHeaderSize+n)
		copy(nb, buf[:ChunkHeaderSize])
		buf = nb
	}
	b := buf[:ChunkHeaderSize+n]
	if _, err := io.ReadFull(rd, b[ChunkHeaderSize:]); err != nil {
		return Chunk{}, buf, err
	}
	c := Chunk{Seq: binary.BigEndian.Uint64(b[8:]), ServerNs: int64(binary.BigEndian.Uint64(b[16:])), Payload: b[ChunkHeaderSize:]}
	if binary.BigEndian.Uint32(b[24:]) != chunkCRC(b) {
		return c, buf, ErrCorruptChunk
	}
	want := make([]byte, n)
	fillPayload(want, c.Seq)
	if string(want) != string(c.Payload) {
		return c, buf, ErrCorruptChunk
	}
	return c, buf, nil
}

func marshalDatagram(seq uint64, ns int64) []byte {
	b := make([]byte, DatagramSize)
	binary.BigEndian.PutUint64(b, seq)
	binary.BigEndian.PutUint64(b[8:], uint64(ns))
	return b
}

func parseDatagram(b []byte) (seq uint64, ns int64, ok bool) {
	if len(b) != DatagramSize {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(b), int64(binary.BigEndian.Uint64(b[8:])), true
}
