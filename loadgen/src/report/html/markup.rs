//! The page's one way to write HTML. Markup comes from the format string
//! literals of [`html!`] and [`html_line!`] and from [`Markup`] (HTML this
//! crate built: a chart's SVG, a framed flamegraph); every value given to
//! them as an argument is escaped, as text and as an attribute value
//! alike. Nothing else writes into an [`Html`].

use std::borrow::Cow;
use std::fmt::{self, Write};

/// HTML this crate built, inserted as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Markup(Cow<'static, str>);

impl Markup {
    /// Markup written in this crate's source (the page's head, its style).
    pub const fn literal(s: &'static str) -> Markup {
        Markup(Cow::Borrowed(s))
    }

    #[cfg(test)]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A page (or a fragment of one) being written.
#[derive(Debug, Default)]
pub struct Html(String);

impl Html {
    pub fn with_capacity(n: usize) -> Html {
        Html(String::with_capacity(n))
    }

    /// Markup built elsewhere.
    pub fn markup(&mut self, m: &Markup) {
        self.0.push_str(&m.0);
    }

    /// What [`html!`] writes: its arguments are already [`Escaped`].
    #[doc(hidden)]
    pub fn write_escaped(&mut self, args: fmt::Arguments<'_>) {
        // Writing into a String cannot fail.
        let _ = self.0.write_fmt(args);
    }

    pub fn into_markup(self) -> Markup {
        Markup(Cow::Owned(self.0))
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Writes `format!`-style into an [`Html`]; every argument is escaped.
/// Arguments are positional (`{}`, `{:.2}`, `{:+.1}`): a name in the
/// string (`{x}`) does not compile.
macro_rules! html {
    ($out:expr, $fmt:literal $(, $arg:expr)* $(,)?) => {
        // Through concat!, a name in the string cannot capture a variable:
        // every value is an argument, and escaped.
        $out.write_escaped(format_args!(concat!($fmt) $(, $crate::report::html::markup::Escaped(&$arg))*))
    };
}

/// [`html!`] with a newline.
macro_rules! html_line {
    ($out:expr, $fmt:literal $(, $arg:expr)* $(,)?) => {
        $out.write_escaped(format_args!(concat!($fmt, "\n") $(, $crate::report::html::markup::Escaped(&$arg))*))
    };
}

pub(crate) use {html, html_line};

/// A value that escapes what it displays (`& < > " '`), honouring the
/// precision and sign of the format (`{:.2}`, `{:+.1}`).
pub struct Escaped<'a, T: ?Sized>(pub &'a T);

impl<T: fmt::Display + ?Sized> fmt::Display for Escaped<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_assert!(f.width().is_none(), "widths are not carried over");
        let text = match (f.precision(), f.sign_plus()) {
            (Some(p), true) => format!("{:+.*}", p, self.0),
            (Some(p), false) => format!("{:.*}", p, self.0),
            (None, true) => format!("{:+}", self.0),
            (None, false) => self.0.to_string(),
        };
        f.write_str(&escape(&text))
    }
}

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Markup built with [`html!`]: `markup!("<b>{}</b>", text)`.
macro_rules! markup {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        let mut h = $crate::report::html::markup::Html::default();
        $crate::report::html::markup::html!(h, $fmt $(, $arg)*);
        h.into_markup()
    }};
}

pub(crate) use markup;

/// SVG a chart library drew (plotters and inferno escape their own text).
pub fn svg(drawn: String) -> Markup {
    Markup(Cow::Owned(drawn))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_escaped_with_their_format() {
        let mut h = Html::default();
        html!(
            h,
            "<a title=\"{}\">{:.2} {:+.1}</a>",
            "<\"'&>",
            1.234_f64,
            5.0_f64
        );
        assert_eq!(
            h.into_string(),
            "<a title=\"&lt;&quot;&#39;&amp;&gt;\">1.23 +5.0</a>"
        );
        let m = markup!("<b>{}</b>", "<x>");
        assert_eq!(m.as_str(), "<b>&lt;x&gt;</b>");
    }
}
