"""Message templates, rendered as FusionAuth renders them: Apache FreeMarker with its square-bracket tags.

Only the part of FreeMarker that message templates need is understood here, and anything else is an error (a
template the dev server cannot render would fail at a real FusionAuth too, or render differently):

* ``${name}``, ``${a.b.c}``: a variable; missing is an error, as in FreeMarker;
* ``${a.b!'default'}``, ``${(a.b)!''}``: a default when missing (FusionAuth's docs recommend it for optional values);
* ``${x?html}``: HTML-escaped. FusionAuth sets no output format on email templates, so nothing is escaped unless the
  template says so (FusionAuth/fusionauth-issues#2715): the kickstart templates escape every user-supplied value;
* ``[#if a.b??]...[#else]...[/#if]``: whether a value exists (no nesting).

The variables of the two-factor template (docs/fusionauth.md §3): ``code``, ``user``, ``tenant``, ``application``
when the challenge names one, and, [inferred], the ``state`` given to the Start API.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any

_MISSING = object()
_IF = re.compile(r"\[#if\s+\(?([A-Za-z_][\w.]*)\)?\?\?\s*\](.*?)(?:\[#else\](.*?))?\[/#if\]", re.DOTALL)
_INTERPOLATION = re.compile(
    r"\$\{\s*\(?([A-Za-z_][\w.]*)\)?"  # the variable, optionally in parentheses
    r"(?:\?(html))?"  # a built-in
    r"(?:!(?:'([^']*)'|\"([^\"]*)\")?)?"  # a default
    r"(?:\?(html))?\s*\}"
)


class TemplateError(ValueError):
    """The template uses something this renderer does not know, or a variable that is missing."""


def _lookup(variables: Mapping[str, Any], path: str) -> Any:
    value: Any = variables
    for part in path.split("."):
        if not isinstance(value, Mapping) or part not in value or value[part] is None:
            return _MISSING
        value = value[part]
    return value


def render(template: str, variables: Mapping[str, Any]) -> str:
    def conditional(match: re.Match[str]) -> str:
        present = _lookup(variables, match.group(1)) is not _MISSING
        return match.group(2) if present else (match.group(3) or "")

    def interpolate(match: re.Match[str]) -> str:
        path, before, single, double, after = match.groups()
        value = _lookup(variables, path)
        has_default = match.group(0).find("!") != -1
        if value is _MISSING:
            if not has_default:
                raise TemplateError(f"the template reads {path}, which is missing")
            value = single if single is not None else (double or "")
        if isinstance(value, (Mapping, list)):
            raise TemplateError(f"{path} is not a text value")
        text = str(value)
        return html.escape(text, quote=True) if (before or after) == "html" else text

    expanded = _IF.sub(conditional, template)
    if "[#" in expanded or "[/#" in expanded:
        raise TemplateError("the template uses a FreeMarker directive the dev server does not render")
    if "${" in _INTERPOLATION.sub("", expanded):
        raise TemplateError("the template uses a FreeMarker expression the dev server does not render")
    return _INTERPOLATION.sub(interpolate, expanded)
