"""What every stage shares. Importing this package first also keeps the app off the network.

``import openvino`` (through its model converter) and NNCF send usage telemetry to Google
Analytics from a pip install unless the ``openvino_telemetry`` package cannot be imported (a DNS
query for www.google-analytics.com was seen from a child of mura-screen). A medical app opens no
connection the user did not configure, so that import now fails in every process that imports
``models`` before OpenVINO, and both fall back to their own no-op stubs. The frozen app leaves
the package out altogether (installers/mura.spec).
"""

import sys

# None in sys.modules is the import system's "blocked" marker; typeshed types the values as modules.
sys.modules.setdefault("openvino_telemetry", None)  # type: ignore[arg-type]
