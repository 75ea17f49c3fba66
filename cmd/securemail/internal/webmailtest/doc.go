// Package webmailtest runs a real Roundcube webmail for end-to-end tests of
// the "Send Secure" plug-in (contrib/roundcube/secure_send): Debian's
// roundcube-core served by "php -S" from a private document root, reading
// mail from a private Dovecot and sending through whatever SMTP submission
// service the test names (a private Postfix from package mtatest).
//
// Everything runs on loopback, on ports chosen free at run time, with all
// files under the test's temporary directory, and is stopped by t.Cleanup.
// No system service is started or configured: the Debian packages are only
// read from (/usr/share/roundcube, /etc/roundcube/defaults.inc.php).
//
//   - [StartDovecot] starts "dovecot -F" with its own base_dir, one
//     passwd-file user and an IMAP listener; [Dovecot.Deliver] drops a
//     message into the user's INBOX (Maildir), as a local delivery would.
//   - [StartRoundcube] lays out a private Roundcube installation (symlinks
//     to the Debian package's code, its own config, SQLite database, logs,
//     temp and plugins folders) and serves it with PHP's built-in server,
//     one worker, behind a Go front server that serves the static files
//     with cache headers. Config edits apply at the next request.
//
// [RequireTools] skips a test when php, dovecot or Roundcube are missing,
// or fails it when the CI environment variable is set.
package webmailtest
