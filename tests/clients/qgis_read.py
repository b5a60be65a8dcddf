"""Read every layer of a running service with QGIS's own OGC API - Features
provider, as a person adding the layers in QGIS does, and print what QGIS got
as JSON. Run by Debian's Python (``python3-qgis``), not the project's venv:

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 tests/clients/qgis_read.py URL LAYER...
"""

import json
import os
import sys

from qgis.core import QgsApplication, QgsRectangle, QgsVectorLayer


def main() -> None:
    url, layers = sys.argv[1], sys.argv[2:]
    app = QgsApplication([], False)
    app.initQgis()
    answer = {}
    for name in layers:
        # The data source URI the "Add WFS / OGC API - Features Layer" dialog writes.
        layer = QgsVectorLayer(f"url='{url}' typename='{name}'", name, "OAPIF")
        if not layer.isValid():
            answer[name] = {"valid": False, "error": layer.error().summary()}
            continue
        features = list(layer.getFeatures())
        box = QgsRectangle(118.0, 36.78, 118.06, 36.83)
        in_box = [f["id"] for f in layer.getFeatures(box)]
        answer[name] = {
            "valid": True,
            "crs": layer.crs().authid(),
            "ids": sorted(f["id"] for f in features),
            "points": {
                f["id"]: [f.geometry().asPoint().x(), f.geometry().asPoint().y()]
                for f in features
                if f.geometry().type() == 0  # point layers
            },
            "fields": [field.name() for field in layer.fields()],
            "in_box": sorted(in_box),
        }
    print(json.dumps(answer, ensure_ascii=False), flush=True)
    # QGIS 3.22 crashes tearing itself down at interpreter exit (a segfault
    # after the answer is out); leave without the teardown.
    os._exit(0)


if __name__ == "__main__":
    main()
