//! The terminal reviewer inbox: an Elm-style application. `update` (pure) turns
//! actions into state changes and effects; `view::render` (pure) draws the
//! state; `app` runs the loop and performs effects.

pub mod action;
pub mod app;
pub mod dialog;
pub mod filter;
pub mod form;
pub mod inbox;
pub mod input;
pub mod keymap;
pub mod notify;
pub mod settings;
pub mod state;
pub mod text;
pub mod update;
pub mod view;
