package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"time"
)

// checkMilterSocketDir: a unix milter socket needs its folder to exist at
// boot and be writable by the service user (it is usually under /run or
// Postfix's queue directory, created by a tmpfiles.d entry).
func checkMilterSocketDir(r *checkReport, c *Config) {
	network, address := c.Milter.Listen.Network, c.Milter.Listen.Address
	if network != "unix" {
		return
	}
	dir := filepath.Dir(address)
	fix := "create it at every boot with contrib/systemd/securemail-postfix.tmpfiles (install it as /etc/tmpfiles.d/securemail-postfix.conf, then run systemd-tmpfiles --create), or point milter.listen at an existing folder"
	st, err := os.Stat(dir)
	switch {
	case missing(err):
		r.errorf("milter.listen", fix, "the folder %s of the milter socket %s does not exist: securemail serve cannot listen there", dir, address)
	case err != nil:
		r.errorf("milter.listen", fix, "the folder %s of the milter socket cannot be checked: %v", dir, err)
	case !st.IsDir():
		r.errorf("milter.listen", "point milter.listen into a folder", "%s, the folder of the milter socket, is not a folder", dir)
	default:
		if err := writableDir(dir); err != nil {
			r.errorf("milter.listen", fix+"; the folder must belong to the user securemail serve runs as",
				"the folder %s of the milter socket is not writable: %v", dir, err)
		}
	}
}

// checkMasterKeyRecords reports what serve refuses to start with: a
// master key that wraps none of the key records. It asks the running
// service when there is one.
func checkMasterKeyRecords(r *checkReport, c *Config) {
	if !fileExists(keystorePath(c)) || !fileExists(c.Keystore.MasterKeyFile) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var st masterKeyStatus
	if err := runAdmin(ctx, c, "master-key.status", nil, nil, io.Discard, &st); err != nil {
		r.warnf("keystore.master_key_file", "run check-config as the user securemail serve runs as, or as root",
			"could not compare the master key with the key records in %s: %v", keystorePath(c), err)
		return
	}
	if err := masterKeyMismatch(c, st.Use, st.currentID(), st.previousID()); err != nil {
		r.errorf("keystore.master_key_file", "put back the master key file that belongs to this database (from your backup); securemail serve refuses to start until then",
			"%v", err)
		return
	}
	if st.NextMasterKeyID != "" {
		r.warnf("keystore.master_key_file", "run securemail master-key rotate to finish it",
			"a master-key rotation from %s to %s is under way: %d key(s) still wrapped under the old key", st.MasterKeyID, st.NextMasterKeyID, st.Use[st.MasterKeyID])
	}
}

func (st masterKeyStatus) currentID() string {
	if st.NextMasterKeyID != "" {
		return st.NextMasterKeyID
	}
	return st.MasterKeyID
}

func (st masterKeyStatus) previousID() string {
	if st.NextMasterKeyID != "" {
		return st.MasterKeyID
	}
	return ""
}
