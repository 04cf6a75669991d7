package testbed

import "errors"

// Sentinel errors; every error returned by this package wraps one of these
// or a system error, with what was attempted.
var (
	ErrNotRoot     = errors.New("testbed needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN): run as root")
	ErrBadPrefix   = errors.New("invalid testbed prefix")
	ErrBadName     = errors.New("invalid container name")
	ErrBadAddress  = errors.New("invalid address")
	ErrUnknownNode = errors.New("unknown node")
	ErrExists      = errors.New("already exists")
	ErrNotFound    = errors.New("not found")
	ErrBadSwitch   = errors.New("invalid switch kind")
	ErrBadHosts    = errors.New("invalid number of hosts")
	ErrBadMigNet   = errors.New("invalid migration network")
)
