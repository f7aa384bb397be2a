// Package drill runs packetdrill scripts: it parses a script of system
// calls and of the packets that must go in and out (packetdrill's
// language), makes the calls through the socket layer that ustack run
// gives programs, injects the inbound packets at the stack's link and
// checks the outbound ones, field by field and against the script's times.
//
// A Target is the stack a script runs against: a ustack stack on a manual
// clock that the script's timestamps move (virtual time, the default), a
// ustack stack on the wall clock, or the Linux kernel in a network
// namespace of the run's own through a tun device. The system calls are
// made by an executor process under the same seccomp filter as ustack run,
// so a script tests what unmodified programs get.
package drill
