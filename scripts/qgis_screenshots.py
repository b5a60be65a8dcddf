"""The README's QGIS pictures, taken from QGIS itself: the "new OGC API -
Features connection" dialog filled in for this service, and a map QGIS drew
from the service's layers. Run by Debian's Python (``python3-qgis``) against a
running service:

    QT_QPA_PLATFORM=offscreen /usr/bin/python3 scripts/qgis_screenshots.py \\
        http://127.0.0.1:8000 docs/
"""

import os
import sys
from pathlib import Path

from qgis.core import (
    QgsApplication,
    QgsMapRendererParallelJob,
    QgsMapSettings,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsNewHttpConnection
from qgis.PyQt.QtCore import QSize
from qgis.PyQt.QtGui import QColor, QFont, QPainter
from qgis.PyQt.QtWidgets import QComboBox, QLineEdit


def connection_dialog(url: str, target: Path) -> None:
    dialog = QgsNewHttpConnection(
        None, QgsNewHttpConnection.ConnectionWfs, "qgis/connections-wfs/", ""
    )
    dialog.setWindowTitle("Create a New WFS Connection")
    dialog.findChild(QLineEdit, "txtName").setText("张店拥军服务 Zhangdian support")
    dialog.findChild(QLineEdit, "txtUrl").setText(url)
    version = dialog.findChild(QComboBox, "cmbVersion")
    version.setCurrentIndex(version.findText("OGC API - Features"))
    dialog.resize(620, 640)
    dialog.show()
    dialog.grab().save(str(target))


def layer_map(url: str, target: Path) -> None:
    layers = []
    for name, colour in [
        ("towns", "#d9d9d9"),
        ("green_channels", "#1f77b4"),
        ("medical", "#2ca02c"),
        ("stations", "#d62728"),
    ]:
        layer = QgsVectorLayer(f"url='{url}' typename='{name}'", name, "OAPIF")
        assert layer.isValid(), name
        symbol = layer.renderer().symbol()
        symbol.setColor(QColor(colour))
        if name != "towns":
            symbol.setSize(2.6)
        layers.append(layer)
    settings = QgsMapSettings()
    settings.setLayers(list(reversed(layers)))  # towns at the bottom
    settings.setBackgroundColor(QColor("white"))
    settings.setOutputSize(QSize(900, 700))
    settings.setDestinationCrs(layers[0].crs())
    extent = QgsRectangle(layers[0].extent())
    extent.scale(1.04)
    extent.setYMaximum(extent.yMaximum() + extent.height() * 0.06)  # room for the title
    settings.setExtent(extent)
    job = QgsMapRendererParallelJob(settings)
    job.start()
    job.waitForFinished()
    image = job.renderedImage()
    painter = QPainter(image)
    painter.fillRect(0, 0, image.width(), 44, QColor(255, 255, 255, 230))
    painter.setFont(QFont("Noto Sans CJK SC", 14))
    title = "QGIS 从服务读取的图层：镇街（灰）、绿色通道（蓝）、医疗（绿）、驿站（红）"
    painter.drawText(16, 30, title)
    painter.end()
    image.save(str(target))


def main() -> None:
    url, folder = sys.argv[1], Path(sys.argv[2])
    app = QgsApplication([], True)
    app.initQgis()
    connection_dialog(url, folder / "qgis-connection.png")
    layer_map(url, folder / "qgis-map.png")
    sys.stdout.flush()
    os._exit(0)  # QGIS 3.22 crashes tearing itself down at exit


if __name__ == "__main__":
    main()
