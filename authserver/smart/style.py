"""The tenant's SMART style document (SMART 2.2 ``smart_style_url``, experimental). Pure.

Apps launched from the EHR read it to look like the EHR; ours follows the tenant's branding.
"""

from __future__ import annotations

from typing import Any

DEFAULT_HIGHLIGHT = "#0b5cad"


def style_document(primary_color: str | None) -> dict[str, Any]:
    return {
        "color_background": "#f4f6f8",
        "color_error": "#a40e26",
        "color_highlight": primary_color or DEFAULT_HIGHLIGHT,
        "color_modal_backdrop": "rgba(0, 0, 0, 0.4)",
        "color_success": "#1a7f37",
        "color_text": "#1b1f24",
        "dim_border_radius": "8px",
        "dim_font_size": "16px",
        "dim_spacing_size": "16px",
        "font_family_body": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
        "font_family_heading": "system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    }
