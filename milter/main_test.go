package milter

import (
	"io"
	"log"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	// go-milter reports closed connections through the standard logger;
	// the tests close connections on purpose.
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}
