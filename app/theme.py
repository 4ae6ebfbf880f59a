"""Dark reading-room theme: low luminance chrome, neutral greys, one accent, red only for warnings."""
from __future__ import annotations

ACCENT = "#3d8bfd"
WARN = "#e5534b"
OK = "#3fb950"
AMBER = "#d29922"
BG = "#111417"
PANEL = "#181c20"
TEXT = "#d5d9de"
MUTED = "#8b949e"

MODALITY_COLOURS = {"ecg": "#e5534b", "pcg": "#a371f7", "echo": "#3d8bfd", "xray": "#8b949e", "endo": "#d29922"}
MODALITY_GLYPHS = {"ecg": "ECG", "pcg": "PCG", "echo": "US", "xray": "CXR", "endo": "END"}

STYLESHEET = f"""
QWidget {{ background: {BG}; color: {TEXT}; font-size: 10pt; }}
QMainWindow::separator {{ background: #22272e; width: 3px; height: 3px; }}
QDockWidget {{ titlebar-close-icon: none; }}
QDockWidget::title {{ background: {PANEL}; padding: 4px 8px; color: {MUTED}; font-weight: bold; }}
QListWidget, QTreeWidget, QTableWidget, QTableView, QPlainTextEdit, QTextEdit, QLineEdit {{
    background: {PANEL}; border: 1px solid #2d333b; selection-background-color: #1f3a5f; }}
QHeaderView::section {{ background: #1c2128; color: {MUTED}; border: 0; padding: 3px 6px; }}
QPushButton, QToolButton {{ background: #22272e; border: 1px solid #373e47; padding: 4px 10px; border-radius: 3px; }}
QPushButton:hover, QToolButton:hover {{ border-color: {ACCENT}; }}
QPushButton:pressed, QToolButton:checked {{ background: #1f3a5f; }}
QPushButton:disabled {{ color: #545d68; }}
QPushButton#primary {{ background: #1f3a5f; border-color: {ACCENT}; font-weight: bold; }}
QComboBox, QSpinBox, QDoubleSpinBox {{ background: #22272e; border: 1px solid #373e47; padding: 2px 6px; }}
QMenuBar, QMenu {{ background: {PANEL}; }}
QMenu::item:selected, QMenuBar::item:selected {{ background: #1f3a5f; }}
QStatusBar {{ background: {PANEL}; color: {MUTED}; }}
QStatusBar QLabel {{ background: transparent; color: {MUTED}; padding: 0 6px; }}
QProgressBar {{ background: #22272e; border: 1px solid #373e47; text-align: center; height: 14px; }}
QProgressBar::chunk {{ background: {ACCENT}; }}
QTabBar::tab {{ background: #1c2128; padding: 5px 12px; border: 0; }}
QTabBar::tab:selected {{ background: {PANEL}; color: white; border-bottom: 2px solid {ACCENT}; }}
QLabel#stamp {{ color: white; background: {WARN}; font-weight: bold; padding: 4px 8px; border-radius: 2px; }}
QLabel#muted {{ color: {MUTED}; }}
QLabel#headline {{ font-size: 20pt; font-weight: bold; }}
QLabel#notinstalled {{ color: {AMBER}; }}
QSlider::groove:horizontal {{ height: 4px; background: #373e47; }}
QSlider::handle:horizontal {{ background: {ACCENT}; width: 12px; margin: -5px 0; border-radius: 6px; }}
"""
