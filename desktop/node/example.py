"""The annotated example configuration (``mura-node --example``), kept as code so the test suite
loads it (a documented example that does not validate is worse than none) and the .deb ships it
as ``/usr/share/doc/mura-fracture/node.example.toml``."""

EXAMPLE_CONFIG = """\
# mura-node: receives radiograph studies from the PACS (DICOM C-STORE), screens each complete
# study, and sends the results back (a Structured Report and Secondary Captures, in the source
# study, new series). Research use only - not for diagnostic use.
# Check this file with:  mura-node --check /etc/mura-fracture/node.toml

[node]
ae_title = "MURA_NODE"          # our AE title: the PACS sends to it (the called AE title)
address = "127.0.0.1"           # address to listen on: 127.0.0.1 = this machine only;
                                # a LAN address of this machine to accept the PACS's calls
port = 11112
allowed_callers = ["PACS"]      # calling AE titles allowed to send; every other is refused
max_associations = 4            # simultaneous associations; more are refused (local limit)
data_dir = "/var/lib/mura-node" # spool, results, outbox and logs

[destination]                   # where results go (usually the PACS that sends the studies)
ae_title = "PACS"
host = "192.0.2.10"
port = 104
retry_seconds = 10              # a failed send is retried after 10 s, then 20, 40, ...
retry_max_seconds = 600         # ... up to every 10 minutes; results wait on disk meanwhile
# tls = true                    # send over TLS too (needs the [tls] table)

[study]
quiet_seconds = 30              # a study is complete when no image arrived for this long
max_study_mb = 2048             # a larger study is refused as a whole
max_spool_mb = 20480            # received images kept at most; beyond, sends are refused
                                # ("out of resources") until space is freed
retain_hours = 168              # received images are deleted this long after their results
                                # were sent (the results listing stays)

[screening]
# model = "/opt/mura-fracture/model"   # default: the installed model bundle
device = "CPU"                  # CPU, GPU or AUTO
workers = 1                     # decode processes (each with a memory ceiling and a timeout)
anonymize = false               # true: hash identifiers in the node's worklists and reports
# exact_decode = true           # decode every file in full (default: JPEG 2000 / baseline JPEG at
                                #  reduced resolution where the model's card validated it)

# [tls]                         # DICOM over TLS on the listening port (and for sending with
# certificate = "node.crt"      #  destination.tls = true); paths relative to this file
# private_key = "node.key"
# ca = "clinic-ca.crt"          # set: callers must present a certificate signed by this CA
"""
