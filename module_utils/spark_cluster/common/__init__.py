"""Small stdlib helpers every part uses: file reads and atomic writes (fileio), the docker
env-file format (envfile), desired state of many node files in one call (node_files)."""
