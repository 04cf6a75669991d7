// Package e2e holds end-to-end tests of the whole system running as it
// does for users: `cflow switch serve` and one `cflow agent serve` per host
// as separate processes on the testbed, driven through their APIs. The
// test binary doubles as the cflow binary (see TestMain).
package e2e
