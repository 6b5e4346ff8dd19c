// Package fleetstack runs an autoscaling group on the docker fleet provider
// the way production runs one on EC2: instances (containers of the
// instance image) on a bridge network, each running its mageflow agent and
// serving the site with nginx + php-fpm on port 80; a real nginx balancer on
// this machine whose upstream the balancer's agent owns; the control worker
// (workflows, fleet activities and the provider's controller) in this
// process or as an OS process that can be SIGKILLed.
//
// It is shared by the fleet end-to-end tests in package test and by the
// fleet benchmark (test/benchfleet), so the figures the benchmark prints
// come from the setup the tests assert on.
package fleetstack
