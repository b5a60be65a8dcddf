"""The resident web map: style, assets and the page built with folium."""
