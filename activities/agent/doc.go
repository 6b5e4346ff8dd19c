// Package agent holds the activities that run on a host's agent
// (bin/mageflow-agent, as root on an app server or a balancer), each group
// a struct of its dependencies:
//
//   - HostActivities: prepare a release (download, verify, extract,
//     install env, link shared, ownership), setup:upgrade, maintenance, the
//     switch, php-fpm reload, probes, pruning and the host's state.
//   - HardenActivities: the Magento 1 hardening audit, apply and verify.
//   - LBActivities: a balancer's pool membership and drain.
//
// Workflows reach them on the host's own task queue (HostTaskQueue), so a
// step runs on the host it changes. Paths always come from the agent's own
// config, never from workflow input, and every write below a release goes
// through internal/host/hostops without following links. The package links
// nothing of the control side (archtest.TestAgentLinksOnlyTheHostSide).
package agent
