// Package stream is a sequence-checked TCP workload for measuring
// migrations from the client's side.
//
// Both directions carry fixed-size records with a sequence number: the
// client sends one every interval and the server echoes it; the server also
// sends its own records every interval. The client checks each of the two
// sequences for loss, duplication and reordering, and keeps every gap
// between consecutive arrivals above a threshold with its time, so a
// benchmark can ask "what was the longest silence this connection saw
// around migration N" — the outage a user actually feels.
package stream
