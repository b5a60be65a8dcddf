"""Opening hours as town offices write them, read into OpenStreetMap ``opening_hours``.

Offices write ``周一至周五 9:00-17:00``, ``每天 8:00-17:30``, ``24小时营业``,
``上午9:00-下午5:00，节假日休息``; the store keeps the OSM form
(``Mo-Fr 09:00-17:00``), so "open now" can be computed. ``to_opening_hours``
is called by the catalog's validation, which every write passes (the edit
API, imports, restores), so each of them accepts the Chinese forms.

The reader is strict on purpose: a text it cannot read whole is refused
with a Chinese message saying how to write it, never guessed at. An
evening written as a morning (``8:30-5:30``) or ranges out of order
(``8:00-12:00, 2:00-5:30``) are refused for the same reason.

Example
-------
>>> to_opening_hours("周一至周五 8:30-12:00，14:00-17:30；节假日休息")
'Mo-Fr 08:30-12:00,14:00-17:30; PH off'
>>> to_opening_hours("Mo-Fr 09:00-17:00")  # already OSM: unchanged
'Mo-Fr 09:00-17:00'
>>> try:
...     to_opening_hours("8:30-12:00 2:00-5:30")  # 2:00 meant 14:00: refused, not guessed
... except OpeningHoursNotUnderstood as error:
...     print(error.message.split("，")[0])
无法识别的开放时间：8:30-12:00 2:00-5:30（几段时间先后顺序不对或有重叠）
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

import opening_hours

from geo_service.errors import OpeningHoursNotUnderstood

__all__ = ["ACCEPTED_FORMS", "MAX_HOURS_CHARS", "hours_text", "to_opening_hours"]

#: Longer texts are refused before any parsing: no real timetable needs more.
MAX_HOURS_CHARS = 200

#: The forms the reader accepts, as shown to office staff (the import
#: template's 说明 sheet and the README list the same ones).
ACCEPTED_FORMS: list[tuple[str, str]] = [
    ("周一至周五 9:00-17:00", "Mo-Fr 09:00-17:00"),
    ("每天 8:00-17:30（或“每日”）", "Mo-Su 08:00-17:30"),
    ("24小时（或“全天”“24小时营业”）", "24/7"),
    ("周一至周五 8:30-12:00，14:00-17:30", "Mo-Fr 08:30-12:00,14:00-17:30"),
    ("8:30-12:00 14:00-17:30", "08:30-12:00,14:00-17:30"),
    ("周六、周日 9:00-16:00", "Sa,Su 09:00-16:00"),
    ("工作日 9:00-17:00", "Mo-Fr 09:00-17:00"),
    ("周一至周五 9:00-17:00；周六 9:00-12:00", "Mo-Fr 09:00-17:00; Sa 09:00-12:00"),
    ("周二至周日 9:00-17:00，周一闭馆", "Tu-Su 09:00-17:00; Mo off"),
    ("周一至周五 9:00-17:00，法定节假日除外", "Mo-Fr 09:00-17:00; PH off"),
    ("星期一至星期五 上午9:00-下午5:00", "Mo-Fr 09:00-17:00"),
]

_DAYS = ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"]
_DAY_NUMBER = {"一": 0, "二": 1, "三": 2, "四": 3, "五": 4, "六": 5, "日": 6, "天": 6, "七": 6}
#: Whole-week words and what they mean, as (first, last) day ranges.
_DAY_WORDS = {
    "每天": [(0, 6)],
    "每日": [(0, 6)],
    "天天": [(0, 6)],
    "全周": [(0, 6)],
    "全年无休": [(0, 6)],
    "全年": [(0, 6)],
    "工作日": [(0, 4)],
    "周末": [(5, 5), (6, 6)],
    "双休日": [(5, 5), (6, 6)],
}
_NOON = 12 * 60
#: 上午/下午 and their kin: which half of the day an hour written 1-12 is in.
_MORNING = {"上午", "早上", "早晨", "早", "凌晨"}
_AFTERNOON = {"中午", "下午", "傍晚", "晚上", "晚"}

_TO = r"\s*(?:-|至|到)\s*"
_DAY = r"(?:周|星期|礼拜)[一二三四五六日天七]"
_DAY_RANGE = re.compile(
    rf"每?(?P<first>{_DAY})(?:{_TO}(?P<last>{_DAY}))?|(?P<word>"
    + "|".join(sorted(_DAY_WORDS, key=len, reverse=True))
    + ")"
)
_TIME = (
    r"(?P<{p}half>上午|早上|早晨|凌晨|中午|下午|傍晚|晚上|早|晚)?\s*"
    r"(?P<{p}next>次日|第二天)?\s*"
    r"(?P<{p}hour>\d{{1,2}})(?::(?P<{p}minute>\d{{2}})|(?P<{p}halfhour>点半)"
    r"|[点时](?:(?P<{p}pointminute>\d{{1,2}})分?)?)"
)
_TIME_RANGE = re.compile(_TIME.format(p="s_") + _TO + _TIME.format(p="e_"))
_ALL_DAY = re.compile(r"(?:全天候|全天|24小时|二十四小时|24h)(?:营业|开放|服务|值班|办公)?")
_HOLIDAYS_OFF = re.compile(
    r"(?:法定)?(?:节假日|节日|假日)(?:除外|休息|闭馆|不开放|关闭|不办公|不营业|停止开放)"
    r"|除(?:法定)?节假日(?:以?外)?"
)
#: Holidays like any other day: OSM applies the weekday rules to them anyway.
_HOLIDAYS_AS_USUAL = re.compile(r"(?:法定)?节假日(?:照常|正常)(?:开放|营业|办公)?")
_CLOSED = re.compile(r"休息|闭馆|不开放|关闭|停止开放|公休|不营业|不办公")
#: Words that say nothing about when: "开放时间：", "对外开放", "营业".
_FILLER = re.compile(r"(?:对外)?(?:开放|营业|办公|服务|接待)(?:时间)?|时间")
#: Only a text with these is taken as OSM as written. Bare times go to the
#: reader: OSM reads "8:30-5:30" as overnight, an office means 17:30.
_OSM_SIGNS = re.compile(r"[A-Za-z/]")
_SEPARATORS = re.compile(r"[\s,;:、/|()\[\]。和及]+")
_ALL_DAY_WITH_TIMES = "“24小时”和具体时间不能同时写"


@dataclass
class _Rule:
    """One OSM rule: days (None: every day), and its times, or closed."""

    days: list[tuple[int, int]] | None = None
    times: list[tuple[int, int]] = field(default_factory=list)  # minutes from midnight
    all_day: bool = False
    closed: bool = False

    @property
    def open_ended(self) -> bool:
        """Still collecting days: nothing said yet about when."""
        return not (self.times or self.all_day or self.closed)


def to_opening_hours(text: str) -> str:
    """``text`` (Chinese as offices write it, or OSM) as OSM ``opening_hours``.

    Parameters
    ----------
    text
        The hours as written, e.g. ``每天 8:00-17:30`` or ``Mo-Fr 09:00-17:00``.

    Returns
    -------
    str
        The OSM form; an OSM value is returned unchanged.

    Raises
    ------
    OpeningHoursNotUnderstood
        For anything not read whole, in Chinese with the form to use.

    Example
    -------
    >>> to_opening_hours("上午9:00-下午5:00"), to_opening_hours("24小时营业")
    ('09:00-17:00', '24/7')
    """
    text = str(text).strip()
    if len(text) > MAX_HOURS_CHARS:
        raise _not_understood(text[:40] + "…", f"超过 {MAX_HOURS_CHARS} 个字")
    if _OSM_SIGNS.search(text) and opening_hours.validate(text):
        return text
    result = _osm(_rules(_normalise(text), text), text)
    if not opening_hours.validate(result):  # a guard: the reader only builds valid forms
        raise _not_understood(text)
    return result


def _not_understood(text: str, why: str = "") -> OpeningHoursNotUnderstood:
    reason = f"（{why}）" if why else ""
    return OpeningHoursNotUnderstood(
        f"无法识别的开放时间：{text}{reason}，请写成“周一至周五 9:00-17:00”或 OSM 格式"
    )


def _normalise(text: str) -> str:
    """Full-width forms (：－；，～ and digits) as ASCII, every dash as ``-``."""
    text = unicodedata.normalize("NFKC", text)
    return re.sub(r"[~〜‐‑‒–—―−]+", "-", text)


def _rules(text: str, original: str) -> tuple[list[_Rule], bool]:
    """The rules of ``text`` in order, and whether public holidays are closed."""
    rules: list[_Rule] = []
    holidays_off = False
    position = 0
    while position < len(text):
        if found := _SEPARATORS.match(text, position):
            position = found.end()
            continue
        rule = rules[-1] if rules else None
        if found := _HOLIDAYS_OFF.match(text, position):
            holidays_off = True
        elif found := _HOLIDAYS_AS_USUAL.match(text, position):
            pass
        elif found := _ALL_DAY.match(text, position):
            if rule is None or not (rule.open_ended or rule.all_day):
                rule = _Rule()
                rules.append(rule)
            rule.all_day = True  # "全天24小时": said twice, still one rule
        elif found := _DAY_RANGE.match(text, position):
            days = _day_ranges(found)
            if rule is not None and rule.days is not None and rule.open_ended:
                rule.days.extend(days)  # 周六、周日: one rule for both
            else:
                rules.append(_Rule(days=days))
        elif found := _TIME_RANGE.match(text, position):
            if rule is not None and rule.all_day:
                raise _not_understood(original, _ALL_DAY_WITH_TIMES)
            if rule is None or rule.closed:
                rule = _Rule()
                rules.append(rule)
            rule.times.append(_minutes_range(found, original))
        elif (found := _CLOSED.match(text, position)) and rule is not None:
            if rule.days is None or not rule.open_ended:
                raise _not_understood(original, "“休息/闭馆”前要写明哪几天")
            rule.closed = True
        elif found := _FILLER.match(text, position):
            pass
        else:
            raise _not_understood(original, f"看不懂“{text[position : position + 10]}”")
        position = found.end()
    return rules, holidays_off


def _day_ranges(found: re.Match[str]) -> list[tuple[int, int]]:
    if found["word"]:
        return list(_DAY_WORDS[found["word"]])
    first = _DAY_NUMBER[found["first"][-1]]
    last = _DAY_NUMBER[found["last"][-1]] if found["last"] else first
    return [(first, last)]


def _clock(found: re.Match[str], prefix: str, original: str) -> tuple[int, str | None]:
    """Minutes from midnight of one written time, and its 上午/下午 word."""
    hour = int(found[f"{prefix}hour"])
    minute_text = found[f"{prefix}minute"] or found[f"{prefix}pointminute"]
    minute = 30 if found[f"{prefix}halfhour"] else int(minute_text or 0)
    half = found[f"{prefix}half"]
    if half in _AFTERNOON and 1 <= hour < 12:
        hour += 12
    elif half in {"晚", "晚上"} and hour == 12:
        hour = 24  # 晚上12点: midnight
    if hour > 24 or minute > 59 or (hour == 24 and minute):
        raise _not_understood(original, f"没有 {hour}:{minute:02d} 这个时间")
    if half in _MORNING and hour > 12:
        raise _not_understood(original, f"“{half}{hour}点”前后矛盾")
    return hour * 60 + minute, half


def _minutes_range(found: re.Match[str], original: str) -> tuple[int, int]:
    start, start_half = _clock(found, "s_", original)
    end, end_half = _clock(found, "e_", original)
    # 下午2:00-5:30: the 下午 of the start covers an end written without one.
    if start_half in _AFTERNOON and end_half is None and not found["e_next"] and end < _NOON:
        end += _NOON
    overnight = bool(found["e_next"]) or end_half == "凌晨"
    if end <= start and not overnight:
        shown = found.group(0)
        raise _not_understood(
            original, f"“{shown}”结束早于开始；下午的时间请写成 17:30 或“下午5:30”"
        )
    return start, end


def _osm(parsed: tuple[list[_Rule], bool], original: str) -> str:
    rules, holidays_off = parsed
    if not rules:
        raise _not_understood(original)
    parts = []
    for rule in rules:
        days = _day_text(rule.days)
        if rule.all_day and rule.times:
            raise _not_understood(original, _ALL_DAY_WITH_TIMES)
        if rule.all_day:
            parts.append("24/7" if days in (None, "Mo-Su") else f"{days} 00:00-24:00")
            continue
        if rule.closed:
            parts.append(f"{days} off")
            continue
        if not rule.times:
            raise _not_understood(original, "写了哪几天，但没写几点到几点")
        for (_, before_end), (after_start, _) in zip(rule.times, rule.times[1:], strict=False):
            if after_start < before_end:
                raise _not_understood(original, "几段时间先后顺序不对或有重叠")
        times = ",".join(f"{_hhmm(start)}-{_hhmm(end)}" for start, end in rule.times)
        parts.append(f"{days} {times}" if days else times)
    if holidays_off:
        parts.append("PH off")
    return "; ".join(parts)


def _day_text(days: list[tuple[int, int]] | None) -> str | None:
    if days is None:
        return None
    ranges = list(dict.fromkeys(days))
    return ",".join(
        _DAYS[first] if first == last else f"{_DAYS[first]}-{_DAYS[last]}" for first, last in ranges
    )


def _hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


# -- the other way: OSM opening_hours as a resident reads them --------------------

_ZH_DAYS = ["周一", "周二", "周三", "周四", "周五", "周六", "周日"]
_EN_DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
_OSM_DAY = r"(?:Mo|Tu|We|Th|Fr|Sa|Su)"
_OSM_DAYS = re.compile(rf"{_OSM_DAY}(?:-{_OSM_DAY})?(?:,{_OSM_DAY}(?:-{_OSM_DAY})?)*")
_OSM_TIMES = re.compile(r"\d{2}:\d{2}-\d{2}:\d{2}(?:,\d{2}:\d{2}-\d{2}:\d{2})*")


def hours_text(value: str | None) -> dict[str, str] | None:
    """OSM ``opening_hours`` as a resident reads them: ``{"zh": ..., "en": ...}``,
    or None for anything outside the forms offices use (the page then shows
    the value as written, labelled as such).

    The Chinese text reads back to ``value`` through ``to_opening_hours``.

    Example
    -------
    >>> hours_text("Mo-Fr 09:00-17:00; Sa 09:00-12:00")["zh"]
    '周一至周五 09:00–17:00；周六 09:00–12:00'
    >>> hours_text("Mo-Su 08:00-17:30; PH off")["en"]
    'Daily 08:00–17:30; closed on public holidays'
    >>> hours_text("Mo-Fr 09:00-17:00 || \\"by appointment\\"") is None
    True
    """
    if not value or not isinstance(value, str) or len(value) > MAX_HOURS_CHARS:
        return None
    zh: list[str] = []
    en: list[str] = []
    for rule in value.strip().split(";"):
        shown = _rule_text(rule.strip())
        if shown is None:
            return None
        zh.append(shown[0])
        en.append(shown[1])
    if not zh:
        return None
    return {"zh": "；".join(zh), "en": "; ".join(en)}


def _rule_text(rule: str) -> tuple[str, str] | None:
    if rule == "24/7":
        return "全天24小时", "Open 24 hours, every day"
    if rule == "PH off":
        return "法定节假日休息", "closed on public holidays"
    days, _, times = rule.partition(" ") if _OSM_DAYS.match(rule) else ("", "", rule)
    if days and not _OSM_DAYS.fullmatch(days):
        return None
    if times == "off" and days:
        zh_days, en_days = _days_text(days)
        return f"{zh_days}休息", f"{en_days} closed"
    if not _OSM_TIMES.fullmatch(times):
        return None
    ranges = []
    for part in times.split(","):
        start, end = part.split("-")
        if not (_valid_clock(start) and _valid_clock(end)) or start == end:
            return None
        ranges.append((start, end, end < start))
    zh_times = "，".join(f"{s}–{'次日' if o else ''}{e}" for s, e, o in ranges)
    en_times = ", ".join(f"{s}–{e}{' (next day)' if o else ''}" for s, e, o in ranges)
    if not days:
        return zh_times, en_times
    zh_days, en_days = _days_text(days)
    return f"{zh_days} {zh_times}", f"{en_days} {en_times}"


def _valid_clock(text: str) -> bool:
    hour, minute = int(text[:2]), int(text[3:])
    return minute < 60 and (hour < 24 or (hour == 24 and minute == 0))


def _days_text(days: str) -> tuple[str, str]:
    if days == "Mo-Su":
        return "每天", "Daily"
    zh, en = [], []
    for part in days.split(","):
        first, _, last = part.partition("-")
        a, b = _DAYS.index(first), _DAYS.index(last) if last else None
        zh.append(_ZH_DAYS[a] if b is None else f"{_ZH_DAYS[a]}至{_ZH_DAYS[b]}")
        en.append(_EN_DAYS[a] if b is None else f"{_EN_DAYS[a]}–{_EN_DAYS[b]}")
    return "、".join(zh), ", ".join(en)
