"""Fast, explainable rules for prompt injection: one regular expression per known phrasing.

Text is normalised first (`normalise`): Unicode NFKC, zero-width and soft-hyphen characters
removed, a few Cyrillic/Greek look-alikes mapped to Latin, case folded, and "leetspeak-light"
undone inside words that mix letters and digits (`1gn0re` → `ignore`), so trivial obfuscation
does not slip past. Each rule names the class it evidences (`override`, `escalation`,
`exfiltration`, `indirect`) and where it applies: most rules apply to every source, a few
(`DATA_ONLY`) only to text that is data (tool results, retrieved documents), because a customer
may well write "return everything" while an order note never should tell the assistant to.

The rules are written for low false positives on ordinary retail requests: "ignore the previous
address, use the new one", "cancel all my orders" or "I'm the admin of our company account"
match nothing. What they miss, the classifier may catch (see `classifier.py`).

Screening costs time linear in the text: normalising is a few linear passes, and `match_rules`
runs every rule in one pass over the words of the text (`scanner.py`), each alternative of a rule
behind a gate of the literals it needs (`needles.py`); the one rule whose expression would rescan
(an instruction inside an HTML comment) has a linear finder (`comments.py`). Tests compare all of
it, span for span, with the plain expressions below.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from .comments import find_keyword_comment
from .matching import Matcher, compile_rule
from .needles import OPEN_GATE, Presence, RuleGate, required_literals
from .scanner import RuleScanner

Source = Literal["user", "tool", "document"]
SOURCES: tuple[str, ...] = ("user", "tool", "document")
ATTACK_LABELS: tuple[str, ...] = ("override", "escalation", "exfiltration", "indirect")
LABELS: tuple[str, ...] = ("benign", *ATTACK_LABELS)

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\u2060\u2061\u2062\u2063\u2064\ufeff\u00ad\u180e"))
_HOMOGLYPHS = str.maketrans({
    "а": "a", "е": "e", "о": "o", "р": "p", "с": "c", "х": "x", "у": "y", "і": "i", "ј": "j", "ѕ": "s",
    "ԁ": "d", "һ": "h", "ɡ": "g", "ο": "o", "α": "a", "ε": "e", "ι": "i", "ν": "v", "τ": "t", "κ": "k",
})
_UNICODE_FOLD = {**_ZERO_WIDTH, **_HOMOGLYPHS}  # one translate pass: zero-width out, look-alikes to Latin
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i"})
# A word (letters, digits, "_", "@$!") of three characters or more that holds a letter and a leet
# character: "1gn0re", "pr0mpt", "@dmin", "in$tructions". It starts only where a word starts (the
# look-behind) and every part is possessive, so each word is read at most twice however long it is;
# inside it each run of letters and leet characters is undone unless it is all digits ("w2024" stays).
_LEET_WORD = re.compile(r"(?<![\w@$!])(?=[\w@$!]{3})(?=(?:[^a-z\W]|[@$!])*+[a-z])[^\W013457]*+[013457@$!][\w@$!]*+")
_LEET_PART = re.compile(r"[a-z0134579@$!]{3,}")
_PART_CHARS = str.maketrans("", "", "abcdefghijklmnopqrstuvwxyz0134579@$!")  # deletes them
_LETTER = re.compile(r"[a-z]")
# Blanks collapse to one space; a blank run holding a line break collapses to that line break, so no
# `\s*` in a rule ever sees more than one character. A single space already is what it should be (the
# look-behind), and the expression starts with a character class, which the engine scans for at C speed.
_BLANKS = re.compile(r"[^\S\n](?:[^\S\n]+|(?<! ))")
_LINE_BREAKS = re.compile(r" ?\n[\n ]*+")


def _unleet_part(m: re.Match[str]) -> str:
    part = m.group(0)
    return part if part.isdigit() else part.translate(_LEET)


def _unleet(m: re.Match[str]) -> str:
    word = m.group(0)  # three characters or more, a letter and a leet character among them
    if not word.translate(_PART_CHARS):  # the usual case: only letters and leet characters
        return word.translate(_LEET)
    return _LEET_PART.sub(_unleet_part, word)


def normalise(text: str) -> str:
    """The form rules match against: NFKC, no zero-width characters, Latin look-alikes, lower case,
    leetspeak-light undone, runs of blanks collapsed (one line break kept: some rules anchor on lines).

    Every step is a single linear pass (translate tables and regular expressions that cannot
    backtrack), so a 32,000-character message normalises in a few milliseconds whatever it holds.
    """
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).lower().translate(_UNICODE_FOLD)
    else:
        text = text.lower()
    text = _BLANKS.sub(" ", text)
    if "\n" in text:
        text = _LINE_BREAKS.sub("\n", text)
    return _unleet_words(text) if any(c in text for c in "013457@$!") else text


def _unleet_words(text: str) -> str:
    """Leetspeak undone word by word, each distinct space-separated token worked out once: a message
    that repeats "1gn0re " four thousand times costs one regular-expression call, not four thousand."""
    done: dict[str, str] = {}
    out = []
    for token in text.split(" "):
        plain = done.get(token)
        if plain is None:
            # Only letters, or no letter at all (a digit run): nothing to undo, and no expression to run.
            unchanged = token.isalpha() or _LETTER.search(token) is None
            plain = done[token] = token if unchanged else _LEET_WORD.sub(_unleet, token)
        out.append(plain)
    return " ".join(out)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    label: str
    pattern: re.Pattern[str]
    data_only: bool = False  # applies only to source "tool"/"document"
    # How `search` runs: `pattern` as gated alternatives (see `matching.py`), or for a rule a regular
    # expression can only express with gaps that rescan, a linear-time `finder` behind `gate`.
    matcher: Matcher | None = None
    finder: Callable[[str], tuple[int, int] | None] | None = None
    gate: RuleGate = OPEN_GATE

    def search(self, text: str, presence: Presence | None = None) -> tuple[int, int] | None:
        """The span of the first match in `text` (normalised), or None. `presence`: `Presence(text)`,
        shared by the rules screening the same text."""
        presence = presence if presence is not None else Presence(text)
        if self.finder is not None:
            return self.finder(text) if self.gate.admits(presence) else None
        if self.matcher is not None:
            return self.matcher.search(text, presence)
        m = self.pattern.search(text)
        return None if m is None else m.span()


def _r(rule_id: str, pattern: str, *, data_only: bool = False,
       finder: Callable[[re.Pattern[str]], Callable[[str], tuple[int, int] | None]] | None = None) -> Rule:
    label = rule_id.split(".", 1)[0]
    assert label in ATTACK_LABELS, rule_id
    compiled = re.compile(pattern, re.MULTILINE)
    if finder is not None:
        return Rule(rule_id, label, compiled, data_only, finder=finder(compiled),
                    gate=RuleGate(required_literals(pattern, re.MULTILINE)))
    return Rule(rule_id, label, compiled, data_only, matcher=compile_rule(pattern, re.MULTILINE))


def _in_comment(keyword: re.Pattern[str]) -> Callable[[str], tuple[int, int] | None]:
    """An HTML comment of at most 400 characters either side of `keyword`, on one line."""
    return lambda text: find_keyword_comment(text, keyword, 400)


_ALL = r"(?:all |any |the |your |my |of |these |those |every )*"
_EARLIER = r"(?:previous|prior|preceding|above|earlier|former|original|initial|old|existing|system|developer|safety|default|current)"
_INSTR = (r"(?:instructions?|directions|directives?|rules|guidelines|guardrails|prompts?|programming|"
          r"system (?:prompt|message)|constraints|restrictions|safety (?:rules|settings|filters?))")
_ADMIN = (r"(?:admin(?:istrator)?|super ?user|sys ?admin|root|operator|developer|moderator|"
          r"staff (?:member|account)|internal (?:employee|staff)|support (?:agent|staff) account|god)")
_AI = r"(?:ai|a\.i\.|assistant|agent|model|llm|chat ?bot|bot|language model|gpt|claude)"

RULES: tuple[Rule, ...] = (
    # --- override: replace the assistant's instructions -------------------------------------------
    _r("override.ignore_instructions",
       rf"\b(?:ignore|disregard|forget|override|bypass|discard|drop|abandon|throw out|set aside|skip)\b ?{_ALL}"
       rf"(?:{_EARLIER} )?(?:\w+ )?{_INSTR}\b"),
    _r("override.instructions_void",
       rf"\b(?:previous|prior|above|earlier|original|old|system|your) {_INSTR} (?:are|is|were|have been) "
       r"(?:now )?(?:void|cancel+ed|revoked|obsolete|overridden|replaced|no longer (?:valid|apply|in effect)|null)"),
    _r("override.no_longer_apply", rf"\b{_INSTR} (?:above |before )?(?:no longer|don'?t|do not) apply\b"),
    _r("override.new_system_prompt",
       r"\b(?:new|updated|revised|real|true|actual) system (?:prompt|message|instructions?)\b|"
       r"\byour (?:new|real|true|actual|updated) (?:instructions|prompt|orders|directives?|task|role|purpose) "
       r"(?:are|is|:)|\bhere (?:are|is) your new (?:instructions|prompt|rules)\b|^ ?(?:#+ ?)?system (?:override|prompt) ?:"),
    _r("override.from_now_on",
       r"\bfrom now on,? you (?:are|will|must|shall|should|have no|only|respond|answer|act|obey)\b.{0,60}"
       r"\b(?:no (?:rules|restrictions|limits|filters)|unrestricted|unfiltered|anything|obey|ignore|only follow|"
       r"my (?:commands|instructions|orders)|without (?:any )?(?:rules|restrictions|limits))"),
    _r("override.forget_everything",
       r"\b(?:forget|erase|wipe|clear|reset) (?:everything|all(?: of)? (?:that|what)|what) (?:you(?:'ve| have)? "
       r"(?:were|was|been) (?:told|taught|instructed|given)|above|before this|you know about your (?:rules|role))"),
    _r("override.mode_switch",
       r"\b(?:developer|dev|god|debug|jailbreak|jailbroken|unrestricted|unfiltered|maintenance|dan|sudo|admin|"
       r"root|unlocked|test) mode\b.{0,40}\b(?:enabled|activated|on|engaged)\b|"
       r"\b(?:enable|activate|enter|switch to|turn on|engage|you are (?:now )?in|go into|unlock) "
       r"(?:the )?(?:developer|dev|god|debug|jailbreak|unrestricted|unfiltered|maintenance|dan|sudo|root) mode\b|"
       r"\bdo anything now\b|\byou are (?:now )?dan\b"),
    _r("override.no_rules_persona",
       r"\b(?:pretend|imagine|act as if|behave as if|assume|roleplay|role-play|suppose) (?:that )?(?:you|there) "
       r"(?:have|had|are|were) no (?:rules|restrictions|guidelines|limits|filters|instructions|policies|policy|"
       r"content policy|guardrails)\b|"
       r"\b(?:without|with no|free of|ignoring) (?:any |your |all )*(?:rules|restrictions|filters|guardrails|"
       r"content polic(?:y|ies)|safety (?:rules|guidelines|filters))\b(?! (?:on|for|about) (?:the )?(?:return|shipping|"
       r"exchange))"),
    _r("override.stop_being",
       r"\b(?:stop|quit) (?:being|acting as|pretending to be) (?:a |an |the )?(?:customer (?:service|support) )?"
       r"(?:assistant|agent|bot|chat ?bot|ai)\b"),
    _r("override.do_not_follow",
       r"\b(?:do not|don'?t|never|stop|no longer) (?:follow|obey|comply with|listen to|adhere to) "
       r"(?:your |the |any |those |these )*(?:previous |prior |original |system |above |company )?"
       r"(?:instructions|rules|guidelines|programming|system prompt|policy|policies|prompt)\b"),
    _r("override.chat_template",
       r"<\|(?:im_start|im_end|system|endoftext|start_header_id|eot_id)\|?>|\[/?inst\]|<</?sys>>|"
       r"<\s*/?\s*(?:system|sys_prompt|instructions?)\s*>"),

    # --- escalation: claim or request more authority than the caller has -----------------------------
    _r("escalation.you_are_now_admin",
       rf"\byou(?:'re| are) (?:now |hereby )?(?:a |an |the |my |in )?(?:privileged |elevated |unrestricted )?"
       rf"{_ADMIN}(?: mode| account| assistant| agent)?\b(?! (?:of|at|for) (?:my|our|the) (?:company|team|office|"
       r"household|family|club|account))"),
    _r("escalation.i_am_admin",
       rf"\b(?:i(?:'m| am)|this is) (?:a |an |the |your )?(?:(?:site|store|shop|system|platform|concierge|"
       rf"head|lead|senior|verified|authori[sz]ed) )*(?:{_ADMIN}|developer of (?:this|the) (?:bot|assistant|system)|"
       r"your (?:creator|developer|programmer|owner|operator|supervisor|boss)|(?:openai|anthropic) (?:staff|employee|engineer))"
       r"\b(?! (?:of|at|for|on|in) (?:my|our|a|the|this)? ?(?:company|team|office|household|family|club|"
       r"small business|business|local|school|account|building|hoa|group))(?! and i (?:want|need|would))"),
    _r("escalation.grant_privileges",
       r"\b(?:grant|give|assign|elevate|escalate|upgrade|promote|add|set|switch|change|raise) (?:me|my|this|the|our) ?"
       r"(?:\w+ ){0,3}(?:to |with |an? )?(?:admin(?:istrator)?|root|operator|superuser|super user|elevated|full|staff|"
       r"unrestricted|privileged|employee|internal|write)(?: level)? (?:access|privileges?|permissions?|rights|role|"
       r"scopes?|mode|status|clearance)\b"),
    _r("escalation.scope_string",
       r"\b(?:refunds?|orders?|users?|admin|payments?|accounts?|tools?|customers?|billing|discounts?|tenant)"
       r":(?:write|admin|all|\*|manage|delete|override)\b|\bscopes? ?[=:] ?\[?[\"']?\w+:\w+"),
    _r("escalation.act_as_admin",
       rf"\b(?:act|behave|respond|operate|proceed|continue) (?:as|like) (?:if you were |if i were |if i am )?"
       rf"(?:a |an |the |my )?(?:privileged |elevated )?(?:{_ADMIN}|system|supervisor|store manager)\b|"
       rf"\btreat me (?:as|like) (?:a |an |the )?(?:{_ADMIN}|employee|staff|supervisor|manager|verified agent)\b"),
    _r("escalation.bypass_checks",
       r"\b(?:bypass|circumvent|disable|deactivate|turn off|switch off|override|skip|get around|suppress|waive) "
       r"(?:the |your |all |any |every |its |this )*(?:user |customer |identity |id |two[- ]factor |2fa |security |"
       r"policy |permission |authori[sz]ation |authentication |fraud |approval |confirmation |verification |safety )+"
       r"(?:step|steps|check|checks|gate|gates|requirement|requirements|prompt|process|verification|confirmation|"
       r"authentication|approval|limit|limits|caps?|policy)\b|"
       r"\b(?:bypass|circumvent|disable|deactivate|turn off|switch off|get around|suppress) (?:the |your |all |any )*"
       r"(?:confirmations?|verification|authentication|2fa|two-factor|identity checks?|security checks?|"
       r"fraud checks?|approvals?|permission checks?|scope checks?|policy checks?|guardrails?)\b"),
    _r("escalation.authorized_claim",
       r"\b(?:i(?:'m| am)|i have been|you are|you've been|you have been) (?:fully |now |hereby )?(?:authori[sz]ed|"
       r"cleared|permitted|allowed) (?:by (?:the )?(?:admin|management|system|developers?|security team) )?"
       r"to (?:bypass|skip|override|issue|access|view|approve|execute|run|use (?:admin|internal|operator))\b|"
       r"\b(?:admin|override|authori[sz]ation|master|root|operator|sudo) (?:code|password|token|key|pin)\b|"
       r"\bi have (?:admin|root|operator|superuser|elevated|full) (?:access|privileges|rights|permissions)\b|"
       r"\bwith (?:admin|root|operator|superuser|elevated) (?:privileges|rights|permissions|access)\b|^ ?sudo\b"),
    _r("escalation.internal_tools",
       r"\b(?:use|enable|unlock|open|give me|call|run) (?:the |your )?(?:internal|admin|operator|staff|hidden|debug|"
       r"privileged|backend|back-end) (?:tools?|functions?|console|panel|api|endpoints?|commands?)\b"),

    # --- exfiltration: other people's data, or the assistant's own configuration -----------------------
    _r("exfiltration.system_prompt",
       r"\b(?:print|show|reveal|repeat|output|display|tell|give|leak|dump|share|copy|paste|write out|recite|spell out|"
       r"return|send|read|list|expose|disclose|translate|summari[sz]e|what (?:is|are|was|were)) (?:me |us |back )?"
       r"(?:out )?(?:the |your )(?:full |entire |complete |exact |original |initial |hidden |secret |internal |"
       r"confidential |first |verbatim )*(?:system (?:prompt|message|instructions?)|initial prompt|prompt|"
       r"instructions|configuration|hidden instructions|rules you (?:were|have been) given|guidelines you follow|"
       r"developer message|pre-?prompt)\b(?! (?:for|to|on|about|of) (?:the |a |my |this |returning|exchanging|"
       r"return|exchange|setting|set|install|assembl|using|use|care|cleaning|wash|order|cancel|the product))|"
       r"\b(?:repeat|print|output|copy|show|reveal) (?:me )?(?:all |everything |the (?:text|words|messages?) )?"
       r"(?:above|before) (?:this|my (?:first )?message|the (?:first|user) message|verbatim)\b|"
       r"\bwhat (?:instructions|rules|guidelines) (?:were|have) you (?:been )?(?:given|told)|"
       r"\b(?:instructions|prompt) (?:you were given|above) (?:verbatim|word for word)\b|"
       r"\b(?:api keys?|secret keys?|access tokens?|credentials|passwords?|env(?:ironment)? variables)\b.{0,30}"
       r"\b(?:you (?:use|have)|configured|of (?:the|your) (?:tools?|backend|system|store)|stored in)\b"),
    _r("exfiltration.other_customers",
       r"\b(?:all|every|other|another|different|everyone(?: else)?|someone(?: else)?|random) ?(?:other )?"
       r"(?:customers?|users?|people|clients?|accounts?|shoppers?|buyers?)(?:'s?|s')? (?:\w+ )?(?:e-?mails?|e-?mail "
       r"addresses|addresses|home addresses|phone numbers?|phones|contact (?:details|info)|personal (?:data|details|info"
       r"(?:rmation)?)|payment (?:details|methods?|info)|credit cards?|card numbers?|conversations?|chats?|chat (?:logs|"
       r"history)|transcripts|names and (?:e-?mails?|addresses)|passwords?|user ?ids?|pii|birthdays?|data)\b|"
       r"\b(?:list|show|give|tell|send|export|dump|print|fetch|pull|get|read|display|share|reveal|find) (?:me |us )?"
       r"(?:the )?(?:names|e-?mails?|addresses|phone numbers|orders|details|accounts) of (?:all |every |other |the other )"
       r"(?:customers|users|people|clients|buyers|shoppers)\b|"
       r"\b(?:list|show|give|export|dump|print|fetch) (?:me |us )?(?:all|every) (?:registered )?(?:customers|users|"
       r"accounts|clients)\b"),
    _r("exfiltration.conversations_of",
       r"\b(?:summari[sz]e|list|show|dump|export|give|read|print|fetch|pull up|forward|send|reveal|tell me about|"
       r"what (?:did|have|has))(?: me| us)? (?:all |the |every |their |his |her |other |previous |past |recent |last )*"
       r"(?:\d+ )?(?:conversations?|chats?|messages|chat (?:history|logs)|transcripts?|tickets|sessions|questions)"
       r" (?:of|for|from|with|by|belonging to|that) (?:user|customer|client|account|other|another|someone|everyone|"
       r"all|the (?:previous|last|other|next) (?:customer|user|person)|[a-z]+_[a-z]+_\d+|\S+@\S+)|"
       r"\bwhat did (?:the )?(?:previous|last|other|prior) (?:customer|user|person|caller)s? (?:ask|say|want|order|buy)"),
    _r("exfiltration.other_user_records",
       r"\b(?:orders?|order history|purchases|address(?:es)?|e-?mails?|phone(?: numbers?)?|payment (?:methods?|details|info)|"
       r"details|information|info|data|profile|account|history|conversations?|credit card) (?:of|for|belonging to|owned by|"
       r"placed by|from) (?:the )?(?:user|customer|client|account holder|another (?:user|customer|person)|other (?:users|"
       r"customers|people)|a different (?:user|customer|person)|someone else)\b(?! (?:service|support|satisfaction|"
       r"experience|agent|portal|reviews?))"),
    _r("exfiltration.dump_database",
       r"\b(?:dump|export|download|print|list|show|give me|output|select \*) (?:me )?(?:the )?(?:entire |whole |full |"
       r"complete |raw )*(?:customer |user |order |orders |users |customers )?(?:database|db|tables?|records|user table|"
       r"customer list|mailing list|user list|from users|from customers)\b(?! (?:of|for) (?:my|this) )"),
    _r("exfiltration.send_out",
       r"\b(?:send|forward|email|e-mail|post|upload|copy|leak|exfiltrate|transmit) (?:all |every |the entire |the full |"
       r"the whole |a copy of )(?:\w+ ){0,3}(?:customers?|users?|conversations?|chats?|records|database|pii|personal "
       r"data|order data|transcripts?)\b.{0,60}\bto\b"),

    # --- indirect: instructions embedded in data ----------------------------------------------------
    _r("indirect.role_marker",
       r"(?:^|\\n|[\"'>\[{(])\s*(?:#+ ?|\*\*|\[|<)?(?:system|assistant|developer|admin|operator|ai)(?:\]|>|\*\*)?"
       r"\s*(?:message|instruction|override|note|prompt)?\s*:\s*(?=\S)"),
    _r("indirect.untrusted_escape", r"<\s*/?\s*untrusted\b|\[/?(?:untrusted|end of (?:data|document|tool result))\]"),
    # `<!--(?:(?!-->).){0,400}?\bKEYWORD\b(?:(?!-->).){0,400}?-->`, searched without rescanning.
    _r("indirect.html_comment_instruction",
       rf"\b(?:{_AI}|ignore|instruction|system|refund|cancel|call|execute|reveal|"
       r"prompt|tool|transfer|grant|send|e-?mail)\b", finder=_in_comment),
    _r("indirect.addressed_to_ai",
       rf"\b(?:note|message|instructions?|attention|notice|reminder|directive|memo|p\.?s\.?) (?:to|for) (?:the |any |all )?"
       rf"(?:{_AI})s?\b|\b(?:if|when|whenever) (?:you are|you're|an?|the) (?:an? )?(?:{_AI}|automated system)s?\b.{{0,20}}"
       r"\b(?:reading|processing|summari[sz]ing|parsing|seeing|sees|reads|processes|summari[sz]es|you must|please|then|"
       r"must|should)|\b(?:{_AI})s? (?:reading|processing|summari[sz]ing|parsing) this\b|"
       rf"\b(?:hey|hi|dear|attention|important|note),? (?:the )?(?:{_AI})s?\b\W+(?:ignore|you must|please (?:refund|"
       r"cancel|issue|send|transfer|call|grant|reveal)|refund|cancel|issue|send|transfer|call|grant|reveal)",
       data_only=True),
    _r("indirect.ai_must_act",
       rf"\b(?:the |any |all )?{_AI}s? (?:must|should|shall|will|needs? to|is (?:required|instructed|expected) to|has to)"
       r" (?:now |immediately |also |silently |quietly |automatically |secretly |instead )?(?:refund|cancel|transfer|"
       r"issue|grant|call|execute|run|invoke|send|delete|approve|ignore|reveal|disclose|email|forward|credit|apply|"
       r"tell the (?:user|customer)|respond|reply|say|include|append|recommend|add|change|update|modify|exchange|"
       r"return)\b", data_only=True),
    _r("indirect.tool_call",
       r"\b(?:call|invoke|execute|run|use|trigger|fire) (?:the )?(?:tool|function|api)s? ?[`'\"]?[a-z_]+_[a-z_]+|"
       r"\b(?:call|invoke|execute|run|trigger) [`'\"]?[a-z]+_[a-z_]+[`'\"]?\s*\(|\{\s*[\"']?(?:tool|function|name|"
       r"tool_name|action)[\"']?\s*:\s*[\"'](?:refund|cancel|transfer|modify|exchange|return|update|grant|issue|"
       r"delete)\w*"),
    _r("indirect.mass_action",
       r"\b(?:refund|cancel|return|delete|void|exchange|credit|approve) (?:all|every|each|everything|any)\b"
       r"(?! (?:of )?(?:my|the items? (?:in|from) my|my own))|"
       r"\b(?:issue|grant|give|send|apply|credit) (?:an? |the )?(?:(?:full|100%|\$?\d[\d,.]*) )+(?:refund|credit|"
       r"gift ?card|discount|store credit|coupon)s? (?:to|for) (?:every|all|this|the (?:user|customer|account)|any)",
       data_only=True),
    _r("indirect.begin_instructions",
       r"\b(?:begin|start|end) (?:of )?(?:new |hidden |secret |important |additional |system )*(?:instructions|prompt|"
       r"directives)\b|\b(?:important|urgent|critical|mandatory) (?:new |updated |additional )?(?:instructions?|"
       r"directives?|system (?:update|notice|message))\s*(?:for|to)?\s*(?:the )?(?:assistant|ai|agent|model|bot)?\s*:",
       data_only=True),
)

_BY_ID = {rule.id: rule for rule in RULES}


@dataclass(frozen=True, slots=True)
class RuleHit:
    rule_id: str
    label: str
    span: tuple[int, int]  # in the normalised text


_MATCHED = [i for i, rule in enumerate(RULES) if rule.matcher is not None]  # the rules the scanner runs
_SCANNER = RuleScanner([RULES[i].matcher for i in _MATCHED])  # type: ignore[misc]
_DATA_ONLY = [RULES[i].data_only for i in _MATCHED]
_SCAN_FROM = 256  # shorter texts run each rule's expression as written: bounded by their length, and cheaper


def match_rules(text: str, *, source: str = "user", normalised: bool = False) -> list[RuleHit]:
    """Every rule that matches `text` (first match per rule), in rule order.

    `source` picks the rules: data-only rules (instructions addressed to the assistant, mass
    refunds) apply to "tool" and "document" only. Pass `normalised=True` when `text` already went
    through `normalise`. All rules are searched together, in one pass over the words of the text
    (see `scanner.py`), in time linear in its length.
    """
    norm = text if normalised else normalise(text)
    data = source != "user"
    hits: list[RuleHit] = []
    if len(norm) < _SCAN_FROM:  # a sentence: each expression once costs less than setting up the scan
        for rule in RULES:
            if rule.data_only and not data:
                continue
            if rule.finder is not None:
                span = rule.finder(norm)
            else:
                m = rule.pattern.search(norm)
                span = None if m is None else m.span()
            if span is not None:
                hits.append(RuleHit(rule.id, rule.label, span))
        return hits
    presence = Presence(norm)
    spans = _SCANNER.scan(norm, lambda k: data or not _DATA_ONLY[k], presence)
    by_rule = {_MATCHED[k]: span for k, span in spans.items()}
    for i, rule in enumerate(RULES):
        if rule.data_only and not data:
            continue
        span = rule.search(norm, presence) if rule.finder is not None else by_rule.get(i)
        if span is not None:
            hits.append(RuleHit(rule.id, rule.label, span))
    return hits


def rule_label(rule_id: str) -> str:
    return _BY_ID[rule_id].label
