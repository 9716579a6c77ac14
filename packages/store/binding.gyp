{
  "targets": [
    {
      "target_name": "mqts_populate",
      "sources": ["native/populate.c", "native/crc32.c"],
      "cflags": ["-O2", "-Wall"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    }
  ]
}
