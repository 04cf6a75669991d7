package ws

// Ping is what a client sends: its own sequence number and send time
// (Unix nanoseconds).
type Ping struct {
	Seq int64 `json:"seq"`
	Ts  int64 `json:"ts"`
}

// Message types in Message.Type.
const (
	TypeFrame = "frame"
	TypeEcho  = "echo"
)

// Message is everything the server sends. A frame carries Seq (per
// connection, from 0), Ts (server send time), Size and Padding; an echo
// carries the ping's Seq, ClientTs and the server's receive time ServerTs.
type Message struct {
	Type     string `json:"type"`
	Seq      int64  `json:"seq"`
	Ts       int64  `json:"ts,omitempty"`
	Size     int    `json:"size,omitempty"`
	Padding  string `json:"padding,omitempty"`
	ClientTs int64  `json:"client_ts,omitempty"`
	ServerTs int64  `json:"server_ts,omitempty"`
}

// IsEcho tells an echo from a frame, also for a seed server that sends no
// type (its echoes are the only messages with a client timestamp).
func (m *Message) IsEcho() bool {
	if m.Type != "" {
		return m.Type == TypeEcho
	}
	return m.ClientTs != 0
}
