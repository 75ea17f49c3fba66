// Package mtatest runs real mail transfer agents for end-to-end tests of the
// securemail milter: private Postfix and Sendmail instances.
//
// Everything runs on loopback, on ports chosen free at run time, with all
// files under t.TempDir(), and is stopped by t.Cleanup. Nothing touches the
// system's own MTA configuration or queue.
//
// The pieces:
//
//   - [RequireTools] skips a test when a program is missing locally and fails
//     it when the CI environment variable is set.
//   - [Sink] is a small SMTP server that stands in for "the rest of the
//     internet": the MTA relays every message to it and it stores each one as
//     a file, written completely before the final 250 reply.
//   - [NewTLSCert] writes a self-signed certificate for STARTTLS.
//   - [Submission] and [Swaks] run swaks and return its exit code and
//     transcript; [SendOne] sends one of several messages on a net/smtp
//     connection, which swaks cannot do.
//   - [WriteSASLDB] creates a Cyrus sasldb with one user.
//   - [Postfix] is a private Postfix instance with an unauthenticated SMTP
//     listener and a submission listener (Cyrus SASL sasldb, PLAIN/LOGIN,
//     STARTTLS offered but not required) that relays everything to a Sink.
//   - [Sendmail] is the same for Sendmail, run from its unpacked Debian
//     packages (SECUREMAIL_SENDMAIL_ROOT) in UTS and mount namespaces, with
//     a Go syslog socket standing in for the missing syslog daemon.
//
// Both satisfy [MTA], so a table of cases written against MTA runs against
// each of them: cmd/securemail's e2eRunPolicyCases takes an MTA.
//
// These tests need root: Postfix's master and Sendmail run as root and drop
// privileges themselves.
package mtatest
