package controller

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/containerflow/containerflow/internal/dataplane"
)

// Sentinel errors of the controller. Every error the controller returns
// for bad input wraps one of them (or a dataplane sentinel), which decides
// the HTTP status (see StatusOf).
var (
	// ErrInvalid: malformed JSON, a bad address, MAC, port or protocol.
	ErrInvalid = errors.New("invalid input")
	// ErrNotFound: the entry, port, service (VIP) or member named does not
	// exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict: the change contradicts the current state (an entry that
	// already exists differently, a duplicate member).
	ErrConflict = errors.New("conflict")
	// ErrTableFull: a table or a service's member list has no room.
	ErrTableFull = errors.New("table full")
	// ErrUnauthorized: a write without a valid bearer token.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrTooLarge: a request body past maxBody.
	ErrTooLarge = errors.New("request body too large")
	// ErrForbidden: a caller with a valid certificate whose identity may
	// not do this (an agent acting for another host).
	ErrForbidden = errors.New("forbidden")
)

// fieldError is an input error that names the offending field, so that API
// answers can say exactly what was wrong.
type fieldError struct {
	kind  error
	field string
	msg   string
}

func (e *fieldError) Error() string {
	if e.field == "" {
		return e.msg
	}
	return e.field + ": " + e.msg
}

func (e *fieldError) Unwrap() error { return e.kind }

func errField(kind error, field, format string, args ...any) error {
	return &fieldError{kind: kind, field: field, msg: fmt.Sprintf(format, args...)}
}

// Field returns the name of the input field an error is about, or "".
func Field(err error) string {
	var fe *fieldError
	if errors.As(err, &fe) {
		return fe.field
	}
	return ""
}

// StatusOf maps an error to the HTTP status the API answers it with: 4xx
// for bad input (the controller's or the data plane's sentinels), 500 for
// the system's own failures.
func StatusOf(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, ErrTableFull), errors.Is(err, dataplane.ErrTableFull):
		return http.StatusInsufficientStorage
	case errors.Is(err, ErrConflict), errors.Is(err, dataplane.ErrPortInUse):
		return http.StatusConflict
	case errors.Is(err, ErrNotFound), errors.Is(err, dataplane.ErrNotFound), errors.Is(err, dataplane.ErrUnknownPort):
		return http.StatusNotFound
	case errors.Is(err, ErrInvalid), errors.Is(err, dataplane.ErrInvalid):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}
