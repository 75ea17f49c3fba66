package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/securemail/securemail/keystore"
)

// --- files ---------------------------------------------------------------

func checkMasterKeyFile(r *checkReport, c *Config) {
	path := c.Keystore.MasterKeyFile
	if path == "" {
		return
	}
	r.checked = append(r.checked, "master key "+path)
	st, err := os.Stat(path)
	switch {
	case missing(err):
		db := keystorePath(c)
		if _, err := os.Stat(db); err == nil {
			r.errorf("keystore.master_key_file", "restore "+path+" from your backup before securemail serve starts",
				"master key file %s is missing but the key database %s exists: serve would create a new master key, and no message sealed so far could ever be opened", path, db)
			return
		}
		if dir, err := creatableBelow(filepath.Dir(path)); err != nil {
			r.errorf("keystore.master_key_file", "make "+filepath.Dir(path)+" a folder the user securemail runs as may write, or choose another keystore.master_key_file",
				"master key file %s does not exist and cannot be created in %s: %v", path, dir, err)
			return
		}
		r.warnf("keystore.master_key_file", "back it up right after the first start, apart from data_dir: without it no sealed message can be opened",
			"master key file %s does not exist: securemail serve will create it on its first start", path)
		return
	case err != nil:
		r.errorf("keystore.master_key_file", "make the folders on its path searchable by the user securemail runs as", "master key file %s cannot be checked: %v", path, err)
		return
	case st.IsDir():
		r.errorf("keystore.master_key_file", "point keystore.master_key_file at the key file itself", "master key file %s is a folder", path)
		return
	}
	f, err := os.Open(path)
	if err != nil {
		r.errorf("keystore.master_key_file", "make the user securemail runs as its owner (chown), mode 0600",
			"master key file %s cannot be read: %v", path, errors.Unwrap(err))
		return
	}
	f.Close()
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		r.errorf("keystore.master_key_file", "chmod 600 "+path,
			"master key file %s has mode %04o: group or others may read it, and securemail refuses to start", path, perm)
		return
	}
	if st.Size() != keystore.MasterKeySize {
		r.errorf("keystore.master_key_file", "restore the original key file from your backup (it is not a passphrase: securemail writes it itself)",
			"master key file %s holds %d bytes, not %d", path, st.Size(), keystore.MasterKeySize)
		return
	}
	if _, err := keystore.LoadMasterKey(path); err != nil {
		r.errorf("keystore.master_key_file", "restore the original key file from your backup", "master key file %s does not load: %v", path, err)
	}
}

func checkDataDir(r *checkReport, c *Config) {
	dir := c.DataDir
	if dir == "" {
		return // reported by checkConfigValues
	}
	r.checked = append(r.checked, "data_dir "+dir)
	if !filepath.IsAbs(dir) {
		wd, _ := os.Getwd()
		r.infof("data_dir %s is relative: securemail resolves it against the folder it starts in (here %s)", dir, wd)
	}
	fix := "make the user securemail serve runs as its owner (chown), mode 0700"
	st, err := os.Stat(dir)
	switch {
	case missing(err):
		if below, err := creatableBelow(dir); err != nil {
			r.errorf("data_dir", "make "+dir+" a folder the user securemail serve runs as owns (mkdir, chown, chmod 700)",
				"data_dir %s does not exist and cannot be created in %s: %v", dir, below, err)
		}
		return
	case err != nil:
		r.errorf("data_dir", fix, "data_dir %s cannot be checked: %v", dir, err)
		return
	case !st.IsDir():
		r.errorf("data_dir", "point data_dir at a folder", "data_dir %s is not a folder", dir)
		return
	}
	if err := writableDir(dir); err != nil {
		r.errorf("data_dir", fix, "data_dir %s is not writable: %v", dir, err)
		return
	}
	spool := spoolPath(c)
	if st, err := os.Stat(spool); err == nil && st.IsDir() {
		if err := writableDir(spool); err != nil {
			r.errorf("data_dir", fix, "the spool folder %s is not writable: %v", spool, err)
		}
	}
	if db := keystorePath(c); fileExists(db) {
		if f, err := os.OpenFile(db, os.O_RDWR, 0); err != nil {
			r.errorf("data_dir", fix, "the key database %s is not writable: %v", db, errors.Unwrap(err))
		} else {
			f.Close()
		}
	}
}

// missing is true for a path that does not exist, also because a part of
// it is a file.
func missing(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// writableDir tells whether files can be created in dir, by creating one
// (and removing it): the only test that also covers ACLs and read-only
// mounts.
func writableDir(dir string) error {
	f, err := os.CreateTemp(dir, ".securemail-check-config-*")
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// creatableBelow finds the nearest existing folder above path (path itself
// if it exists) and tells whether folders can be created in it. It returns
// that folder.
func creatableBelow(path string) (string, error) {
	p := filepath.Clean(path)
	for {
		st, err := os.Stat(p)
		if err == nil {
			if !st.IsDir() {
				return p, errors.New("it is a file, not a folder")
			}
			return p, writableDir(p)
		}
		parent := filepath.Dir(p)
		if parent == p {
			return p, err
		}
		p = parent
	}
}
