package main
import (
 _ "golang.org/x/sys/unix"
 _ "github.com/klauspost/compress/zstd"
 _ "github.com/klauspost/compress/s2"
 _ "github.com/zeebo/blake3"
 _ "github.com/zeebo/xxh3"
 _ "github.com/spf13/cobra"
 _ "golang.org/x/crypto/chacha20poly1305"
)
func main(){}
