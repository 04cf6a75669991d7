package agent

import (
	"fmt"

	"github.com/containerflow/containerflow/internal/tclass"
)

// setupLink installs the traffic classes on the uplink, or removes those
// an earlier run left when this one has no rate. They stay when the agent
// exits: containers outlive the agent and keep sending, and a link that
// changed its scheduling whenever the agent stopped (but not when it
// crashed) would be harder to reason about than one that keeps it until
// the agent is started without --link-rate.
func setupLink(cfg Config) error {
	if cfg.LinkRate == 0 {
		// Not worth refusing to start for: without a rate nothing
		// depends on it.
		removed, err := tclass.Remove(cfg.HostNetns, cfg.Uplink)
		if err != nil {
			cfg.Log.Warn("could not check the uplink for an earlier run's traffic classes", "uplink", cfg.Uplink, "err", err)
		}
		if removed {
			cfg.Log.Info("removed the traffic classes an earlier run put on the uplink", "uplink", cfg.Uplink)
		}
		return nil
	}
	dscp := cfg.MigrationDSCP
	if !tclass.Marks(dscp) {
		dscp = -1
	}
	if err := tclass.Install(cfg.HostNetns, cfg.Uplink, tclass.Config{Rate: cfg.LinkRate, DSCP: dscp}); err != nil {
		return fmt.Errorf("%w: --link-rate: %v", ErrBadRequest, err)
	}
	cfg.Log.Info("traffic classes on the uplink", "uplink", cfg.Uplink, "rate_bps", cfg.LinkRate,
		"migration_share", tclass.MigrationShare, "migration_dscp", dscp)
	return nil
}
