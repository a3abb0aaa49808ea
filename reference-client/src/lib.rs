//! `reference-client`: a thin tokio shell over `acip`. (Being written: see issue 4.)
