//! Colour themes. With `NO_COLOR` every style keeps only attributes (bold,
//! reverse, underline, dim), and no state is ever told by colour alone: markers
//! and words carry it too.

use ratatui::style::{Color, Modifier, Style};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThemeName {
    Dark,
    Light,
    HighContrast,
}

impl ThemeName {
    pub const ALL: [ThemeName; 3] = [ThemeName::Dark, ThemeName::Light, ThemeName::HighContrast];

    pub fn label(&self) -> &'static str {
        match self {
            ThemeName::Dark => "dark",
            ThemeName::Light => "light",
            ThemeName::HighContrast => "high-contrast",
        }
    }

    pub fn parse(text: &str) -> Option<ThemeName> {
        ThemeName::ALL
            .into_iter()
            .find(|theme| theme.label() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Theme {
    pub text: Style,
    pub muted: Style,
    pub title: Style,
    pub accent: Style,
    pub selected: Style,
    pub border: Style,
    pub focus_border: Style,
    pub ok: Style,
    pub warning: Style,
    pub error: Style,
    pub tab: Style,
    pub tab_active: Style,
    pub banner: Style,
    pub key: Style,
    pub header: Style,
}

struct Palette {
    text: Color,
    muted: Color,
    accent: Color,
    border: Color,
    ok: Color,
    warning: Color,
    error: Color,
}

impl Theme {
    pub fn new(name: ThemeName, no_color: bool) -> Theme {
        let bold = Style::default().add_modifier(Modifier::BOLD);
        let reversed = Style::default().add_modifier(Modifier::REVERSED);
        if no_color {
            return Theme {
                text: Style::default(),
                muted: Style::default().add_modifier(Modifier::DIM),
                title: bold,
                accent: bold,
                selected: reversed.add_modifier(Modifier::BOLD),
                border: Style::default(),
                focus_border: bold,
                ok: bold,
                warning: bold,
                error: bold.add_modifier(Modifier::UNDERLINED),
                tab: Style::default(),
                tab_active: reversed.add_modifier(Modifier::BOLD),
                banner: reversed.add_modifier(Modifier::BOLD),
                key: bold,
                header: Style::default().add_modifier(Modifier::UNDERLINED),
            };
        }
        let palette = match name {
            ThemeName::Dark => Palette {
                text: Color::Gray,
                muted: Color::DarkGray,
                accent: Color::Cyan,
                border: Color::DarkGray,
                ok: Color::Green,
                warning: Color::Yellow,
                error: Color::LightRed,
            },
            ThemeName::Light => Palette {
                text: Color::Black,
                muted: Color::Gray,
                accent: Color::Blue,
                border: Color::Gray,
                ok: Color::Green,
                warning: Color::Magenta,
                error: Color::Red,
            },
            ThemeName::HighContrast => Palette {
                text: Color::White,
                muted: Color::White,
                accent: Color::LightYellow,
                border: Color::White,
                ok: Color::LightGreen,
                warning: Color::LightYellow,
                error: Color::LightRed,
            },
        };
        Theme {
            text: Style::default().fg(palette.text),
            muted: Style::default().fg(palette.muted),
            title: bold.fg(palette.accent),
            accent: Style::default().fg(palette.accent),
            selected: reversed.add_modifier(Modifier::BOLD),
            border: Style::default().fg(palette.border),
            focus_border: bold.fg(palette.accent),
            ok: Style::default().fg(palette.ok),
            warning: bold.fg(palette.warning),
            error: bold.fg(palette.error),
            tab: Style::default().fg(palette.muted),
            tab_active: reversed.add_modifier(Modifier::BOLD).fg(palette.accent),
            banner: reversed.add_modifier(Modifier::BOLD).fg(palette.error),
            key: bold.fg(palette.accent),
            header: bold.fg(palette.muted),
        }
    }
}
