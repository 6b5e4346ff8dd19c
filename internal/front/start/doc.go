// Package start is the one place that starts mageflow's workflows: every
// front end (the CLI, the webhook server and dashboard, the SQS poller)
// goes through it, so each workflow is started under one id rule and one
// set of search attributes whoever asks.
//
//   - Builds starts BuildRelease, one run per commit.
//   - Deploys starts and steers ZeroDowntimeDeploy, one run per app and
//     environment; Dashboard adapts it to the server.
//   - Fleet starts ScaleOutReadiness per lifecycle event and
//     WarmPoolImageRefresh per group.
//   - Harden starts MagentoM1EOLHardening, one run per host.
package start
