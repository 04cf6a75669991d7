package e2e

import (
	"net/netip"
	"path/filepath"
)

var testbedIP = netip.MustParseAddr("198.18.0.2")

func baseName(p string) string { return filepath.Base(p) }

func mustIP(s string) netip.Addr { return netip.MustParseAddr(s) }
