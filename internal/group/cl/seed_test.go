package cl

import (
	"os"
	"strconv"
)

// testingSeed is $CKPT_TEST_SEED, to replay a failing schedule.
func testingSeed() uint64 {
	n, _ := strconv.ParseUint(os.Getenv("CKPT_TEST_SEED"), 10, 64)
	return n
}
