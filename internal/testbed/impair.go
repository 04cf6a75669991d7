package testbed

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ErrBadImpairment is wrapped by every refusal of an impairment or a link
// name; nothing has been changed when it is returned.
var ErrBadImpairment = errors.New("invalid impairment")

// Impairment is what a link does to the frames crossing it, the same in
// each direction: every frame is delayed by Delay ± Jitter (uniform), lost
// with probability Loss percent, and serialised at Rate bits per second.
// Delay is one-way, so a round trip across one impaired link gains twice
// Delay.
type Impairment struct {
	Delay  time.Duration `json:"delay,omitempty"`
	Jitter time.Duration `json:"jitter,omitempty"`
	// Loss is a percentage, 0 to 100.
	Loss float64 `json:"loss,omitempty"`
	// Rate is in bits per second; 0 is unlimited.
	Rate uint64 `json:"rate,omitempty"`
	// Seed makes the loss and jitter draws repeat: the same seed and the
	// same sequence of frames give the same drops. 0 at Impair picks one,
	// which is recorded.
	Seed uint64 `json:"seed"`
	// Limit is the queue in front of the rate limit, in full-size
	// frames (netem's limit); 0 is 1000.
	Limit int `json:"limit,omitempty"`
}

// DefaultImpairLimit is the rate queue when Impairment.Limit is 0, as
// netem's default.
const DefaultImpairLimit = 1000

// Validate refuses values no mechanism can honour.
func (im Impairment) Validate() error {
	switch {
	case im.Delay < 0:
		return fmt.Errorf("%w: negative delay %s", ErrBadImpairment, im.Delay)
	case im.Jitter < 0:
		return fmt.Errorf("%w: negative jitter %s", ErrBadImpairment, im.Jitter)
	case im.Jitter > im.Delay:
		// Half the distribution would be clamped at zero: not uniform
		// any more, and not what the number says.
		return fmt.Errorf("%w: jitter %s is larger than the delay %s", ErrBadImpairment, im.Jitter, im.Delay)
	case math.IsNaN(im.Loss) || im.Loss < 0 || im.Loss > 100:
		return fmt.Errorf("%w: loss %v%% is not between 0%% and 100%%", ErrBadImpairment, im.Loss)
	case im.Limit < 0:
		return fmt.Errorf("%w: negative limit %d", ErrBadImpairment, im.Limit)
	case im.Delay > time.Minute:
		return fmt.Errorf("%w: delay %s is over a minute", ErrBadImpairment, im.Delay)
	case im.Rate != 0 && im.Rate < 8000:
		return fmt.Errorf("%w: rate %s is below 8kbit", ErrBadImpairment, FormatRate(im.Rate))
	}
	if im.IsZero() {
		return fmt.Errorf("%w: nothing to do (no delay, loss or rate); clear the link instead", ErrBadImpairment)
	}
	return nil
}

// IsZero reports whether the impairment leaves frames alone.
func (im Impairment) IsZero() bool {
	return im.Delay == 0 && im.Jitter == 0 && im.Loss == 0 && im.Rate == 0
}

func (im Impairment) limit() int {
	if im.Limit == 0 {
		return DefaultImpairLimit
	}
	return im.Limit
}

// String is the impairment in the CLI's words.
func (im Impairment) String() string {
	var p []string
	if im.Delay != 0 {
		p = append(p, "delay "+im.Delay.String())
	}
	if im.Jitter != 0 {
		p = append(p, "jitter "+im.Jitter.String())
	}
	if im.Loss != 0 {
		p = append(p, "loss "+strconv.FormatFloat(im.Loss, 'g', -1, 64)+"%")
	}
	if im.Rate != 0 {
		p = append(p, "rate "+FormatRate(im.Rate))
	}
	p = append(p, "seed "+strconv.FormatUint(im.Seed, 10))
	return strings.Join(p, " ")
}

// ParseImpairment builds an impairment from the CLI's strings; empty ones
// are left at zero.
func ParseImpairment(delay, jitter, loss, rate string) (Impairment, error) {
	var im Impairment
	var err error
	if delay != "" {
		if im.Delay, err = ParseDelay(delay); err != nil {
			return im, err
		}
	}
	if jitter != "" {
		if im.Jitter, err = ParseDelay(jitter); err != nil {
			return im, err
		}
	}
	if loss != "" {
		if im.Loss, err = ParseLoss(loss); err != nil {
			return im, err
		}
	}
	if rate != "" {
		if im.Rate, err = ParseRate(rate); err != nil {
			return im, err
		}
	}
	return im, nil
}

// ParseDelay reads a Go duration ("10ms", "1.5ms", "250us"); a bare number
// is refused because its unit would be a guess.
func ParseDelay(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%w: duration %q (want e.g. 10ms, 500us, 1s)", ErrBadImpairment, s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%w: negative duration %q", ErrBadImpairment, s)
	}
	return d, nil
}

// ParseLoss reads a percentage ("1%", "0.5%", or "0.5" meaning 0.5%).
func ParseLoss(s string) (float64, error) {
	v, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(s), "%"), 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("%w: loss %q (want a percentage, e.g. 1%% or 0.5%%)", ErrBadImpairment, s)
	}
	if v < 0 || v > 100 {
		return 0, fmt.Errorf("%w: loss %q is not between 0%% and 100%%", ErrBadImpairment, s)
	}
	return v, nil
}

// rateUnits are tc's: decimal multiples, "bit" for bits and "bps" for
// bytes per second.
var rateUnits = []struct {
	suffix string
	mult   float64
}{
	{"tbit", 1e12}, {"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1},
	{"tbps", 8e12}, {"gbps", 8e9}, {"mbps", 8e6}, {"kbps", 8e3}, {"bps", 8},
}

// ParseRate reads a rate with tc's units ("10mbit", "1gbit", "500kbit";
// "bps" units are bytes per second) into bits per second. A bare number is
// refused: tc would read it as bytes, most people as bits.
func ParseRate(s string) (uint64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	for _, u := range rateUnits {
		num, ok := strings.CutSuffix(t, u.suffix)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(num, 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			break
		}
		if v < 0 {
			return 0, fmt.Errorf("%w: negative rate %q", ErrBadImpairment, s)
		}
		bits := v * u.mult
		if bits > 1e13 {
			return 0, fmt.Errorf("%w: rate %q is too large", ErrBadImpairment, s)
		}
		return uint64(math.Round(bits)), nil
	}
	return 0, fmt.Errorf("%w: rate %q (want a number and a unit: bit, kbit, mbit, gbit, or bps, kbps, mbps for bytes/s)", ErrBadImpairment, s)
}

// FormatRate writes bits per second with the largest exact tc unit.
func FormatRate(bps uint64) string {
	for _, u := range []struct {
		s string
		m uint64
	}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}} {
		if bps >= u.m && bps%u.m == 0 {
			return strconv.FormatUint(bps/u.m, 10) + u.s
		}
	}
	return strconv.FormatUint(bps, 10) + "bit"
}

// Link kinds: a node's data link (eth0 <-> sw-NODE, through the switch's
// data plane) or its management link (mgmt0 <-> mg-NODE, which carries the
// agents' APIs and checkpoint image transfer).
const (
	LinkData = "data"
	LinkMgmt = "mgmt"
)

// LinkRef names one veth pair of the testbed.
type LinkRef struct {
	Node string `json:"node"`
	Kind string `json:"kind"`
}

// ParseLink reads "NODE" (its data link), "NODE-data" or "NODE-mgmt", for
// any node a testbed may have; whether this testbed has it, tb.parseLink
// checks.
func ParseLink(s string) (LinkRef, error) {
	node, kind, ok := strings.Cut(s, "-")
	if !ok {
		kind = LinkData
	}
	if _, err := PlannedSpec(node); err != nil {
		return LinkRef{}, fmt.Errorf("%w: link %q: %w (links: NODE, NODE-data, NODE-mgmt)", ErrBadImpairment, s, err)
	}
	if kind != LinkData && kind != LinkMgmt {
		return LinkRef{}, fmt.Errorf("%w: link %q: kind %q is not data or mgmt", ErrBadImpairment, s, kind)
	}
	return LinkRef{Node: node, Kind: kind}, nil
}

// parseLink is ParseLink for a link of this testbed.
func (tb *Testbed) parseLink(s string) (LinkRef, error) {
	l, err := ParseLink(s)
	if err != nil {
		return l, err
	}
	if _, err := tb.Spec(l.Node); err != nil {
		return LinkRef{}, fmt.Errorf("%w: link %q: %w", ErrBadImpairment, s, err)
	}
	return l, nil
}

// Links are every link of the testbed that can be impaired, in a fixed
// order.
func (tb *Testbed) Links() []LinkRef {
	var l []LinkRef
	for _, n := range tb.Nodes() {
		l = append(l, LinkRef{n.Name, LinkData}, LinkRef{n.Name, LinkMgmt})
	}
	return l
}

func (l LinkRef) String() string { return l.Node + "-" + l.Kind }

// NodeIf is the link's interface inside the node.
func (l LinkRef) NodeIf() string {
	if l.Kind == LinkMgmt {
		return MgmtIf
	}
	return UplinkIf
}

// SwitchIf is the link's port in the switch namespace.
func (l LinkRef) SwitchIf() string {
	s, _ := PlannedSpec(l.Node)
	if l.Kind == LinkMgmt {
		return s.MgmtPort()
	}
	return s.DataPort()
}

// ParseImpairSpec reads "LINK:delay=20ms,jitter=2ms,loss=1%,rate=10mbit,seed=7"
// (any subset of the keys) into the canonical link name and its impairment.
func ParseImpairSpec(s string) (string, Impairment, error) {
	link, kv, ok := strings.Cut(s, ":")
	if !ok {
		return "", Impairment{}, fmt.Errorf("%w: %q (want LINK:delay=D,jitter=J,loss=P,rate=R,seed=S)", ErrBadImpairment, s)
	}
	l, err := ParseLink(link)
	if err != nil {
		return "", Impairment{}, err
	}
	vals := map[string]string{}
	for _, f := range strings.Split(kv, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok || v == "" {
			return "", Impairment{}, fmt.Errorf("%w: %q: %q is not key=value", ErrBadImpairment, s, f)
		}
		switch k {
		case "delay", "jitter", "loss", "rate", "seed", "limit":
		default:
			return "", Impairment{}, fmt.Errorf("%w: %q: unknown key %q (delay, jitter, loss, rate, seed, limit)", ErrBadImpairment, s, k)
		}
		vals[k] = v
	}
	im, err := ParseImpairment(vals["delay"], vals["jitter"], vals["loss"], vals["rate"])
	if err != nil {
		return "", im, err
	}
	if v, ok := vals["seed"]; ok {
		if im.Seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			return "", im, fmt.Errorf("%w: seed %q", ErrBadImpairment, v)
		}
	}
	if v, ok := vals["limit"]; ok {
		if im.Limit, err = strconv.Atoi(v); err != nil {
			return "", im, fmt.Errorf("%w: limit %q", ErrBadImpairment, v)
		}
	}
	return l.String(), im, im.Validate()
}
