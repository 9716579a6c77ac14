{
  "targets": [
    {
      "target_name": "mqts_populate",
      "sources": ["native/populate.c"],
      "cflags": ["-O2", "-Wall"],
      "conditions": [["OS!='linux'", {"type": "none"}]]
    }
  ]
}
